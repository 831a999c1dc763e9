// N clients pulling the layer at once through each front (curl to /dev/null, so the clients cost little): time, CPU per GiB, peak memory per process.

import { execFile } from 'node:child_process';
import { CpuMeter, PeakRss, reapedChildrenCpuSeconds } from './proc-stats.js';
import { gib, median, progress, round, withTimeout } from './support.js';
import type { Front } from './fronts.js';
import { pullAuthorization, stageRepository, type Stage } from './stage.js';

/** TLS 1.3 suites in Go's order (skopeo, docker, containerd): fronts that let the client choose get what those clients ask for. */
const clientSuites = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

export interface ConcurrentResult {
  front: string;
  kind: Front['kind'];
  workers: number;
  clients: number;
  /** Median over the rounds: from the first request to the last byte of the slowest client. */
  seconds: number;
  rounds: number[];
  /** Bytes all clients received together, per second, in MiB. */
  mibPerSecond: number;
  /** CPU seconds of the front's processes per GiB relayed (median round). */
  frontCpuPerGib: number;
  clientCpuPerGib: number | undefined;
  /** Peak RSS of each of the front's processes (root first) in the median round, MiB. */
  peakRss: number[];
}

/** GET the blob to /dev/null; resolves with the bytes received, rejects on any failure. */
function curlBlob(url: string, caPath: string, authorization: string | undefined, timeoutMs: number): Promise<number> {
  const args = ['-sS', '-f', '--http1.1', '-o', '/dev/null', '-w', '%{size_download}'];
  if (url.startsWith('https:')) args.push('--cacert', caPath, '--tls13-ciphers', clientSuites);
  if (authorization) args.push('-H', `Authorization: ${authorization}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile('curl', args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`curl ${url} failed: ${stderr.trim() || error.message}`));
      else resolve(Number(stdout.trim()));
    });
  });
}

interface Round {
  seconds: number;
  frontCpu: number;
  clientCpu: number | undefined;
  peakRss: number[];
}

async function oneRound(stage: Stage, front: Front, clients: number, timeoutMs: number): Promise<Round> {
  const digest = stage.image.layerDigests[0]!;
  const size = stage.image.layerSizes[0]!;
  const url = `${front.url}/v2/${stageRepository}/blobs/${digest}`;
  const authorization = await pullAuthorization(stage, front);
  const cpu = new CpuMeter([front.pid]);
  const rss = new PeakRss([front.pid]).start();
  const clientBefore = reapedChildrenCpuSeconds();
  const started = performance.now();
  const received = await withTimeout(`${clients} pulls through ${front.name}`, timeoutMs, Promise.all(Array.from({ length: clients }, () => curlBlob(url, stage.caPath, authorization, timeoutMs))));
  const seconds = (performance.now() - started) / 1000;
  const clientAfter = reapedChildrenCpuSeconds();
  const peakRss = rss.stop();
  if (received.some((bytes) => bytes !== size)) throw new Error(`a pull through ${front.name} received ${received.join(', ')} bytes, not ${size}`);
  return { seconds, frontCpu: cpu.read(), clientCpu: clientBefore === undefined || clientAfter === undefined ? undefined : clientAfter - clientBefore, peakRss };
}

export async function measureConcurrentPulls(o: { stage: Stage; clientCounts: number[]; rounds: number; transferTimeoutMs: number }): Promise<ConcurrentResult[]> {
  const results: ConcurrentResult[] = [];
  const size = o.stage.image.layerSizes[0]!;
  // Basic-mode gateways relay the same way; the token ones stand for both.
  const fronts = o.stage.fronts.filter((front) => front.auth !== 'basic');
  for (const clients of o.clientCounts) {
    const rounds = new Map<Front, Round[]>(fronts.map((front) => [front, []]));
    for (let round = 0; round < o.rounds; round++) {
      // Every round in a new order, so machine noise does not always hit the same front.
      for (const front of [...fronts.slice(round % fronts.length), ...fronts.slice(0, round % fronts.length)]) {
        rounds.get(front)!.push(await oneRound(o.stage, front, clients, o.transferTimeoutMs * clients));
      }
    }
    for (const front of fronts) {
      const mine = rounds.get(front)!;
      const middle = [...mine].sort((a, b) => a.seconds - b.seconds)[Math.floor(mine.length / 2)]!;
      const gibRelayed = (size * clients) / gib;
      const seconds = median(mine.map((entry) => entry.seconds));
      results.push({
        front: front.name,
        kind: front.kind,
        workers: front.workers,
        clients,
        seconds: round(seconds, 3),
        rounds: mine.map((entry) => round(entry.seconds, 3)),
        mibPerSecond: round((size * clients) / (1024 * 1024) / seconds, 1),
        frontCpuPerGib: round(median(mine.map((entry) => entry.frontCpu)) / gibRelayed, 2),
        clientCpuPerGib: mine.every((entry) => entry.clientCpu !== undefined) ? round(median(mine.map((entry) => entry.clientCpu!)) / gibRelayed, 2) : undefined,
        peakRss: middle.peakRss,
      });
      progress(`${clients} client${clients === 1 ? '' : 's'} ${front.name.padEnd(12)} ${seconds.toFixed(2)} s`);
    }
  }
  return results;
}
