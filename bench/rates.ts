// Small requests with ApacheBench: HEAD of a manifest through each front (Bearer and Basic on the gateways) and token issue rates, with peak memory per process.

import type { Front } from './fronts.js';
import { CpuMeter, PeakRss } from './proc-stats.js';
import { httpsGet, progress, round, run } from './support.js';
import { ociManifestType, pullAuthorization, stageRepository, type Stage } from './stage.js';

export const connections = 32;

export interface RateResult {
  /** `head-manifest` or `token`. */
  request: 'head-manifest' | 'token';
  front: string;
  kind: Front['kind'];
  workers: number;
  /** `none`, `bearer` or `basic`. */
  auth: string;
  requestsPerSecond: number;
  /** Answers other than 2xx/3xx; any at all means the figure is not what it claims. */
  badResponses: number;
  /** Requests ab counts as failed for a connection, receive or exception error (length changes are normal for tokens). */
  failed: number;
  /** CPU seconds of the front's processes per 10,000 requests. */
  cpuPer10k: number;
  peakRss: number[];
}

type Figures = Pick<RateResult, 'requestsPerSecond' | 'badResponses' | 'failed'> & { requests: number };

function parseAb(output: string): Figures {
  const rate = /Requests per second:\s+([\d.]+)/.exec(output);
  const total = /Complete requests:\s+(\d+)/.exec(output);
  if (!rate || !total) throw new Error(`ab printed no "Requests per second" line:\n${output}`);
  const bad = /Non-2xx responses:\s+(\d+)/.exec(output);
  const failed = /\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)/.exec(output);
  return {
    requestsPerSecond: Number(rate[1]),
    requests: Number(total[1]),
    badResponses: bad ? Number(bad[1]) : 0,
    failed: failed ? Number(failed[1]) + Number(failed[2]) + Number(failed[3]) : 0,
  };
}

/**
 * ApacheBench on kept-alive connections for `seconds` (wrk cannot be used: it waits for the body a
 * HEAD answer's Content-Length announces). `head` sends HEAD.
 */
async function runAb(o: { url: string; headers: string[]; head: boolean; seconds: number; front: Front }): Promise<Omit<RateResult, 'request' | 'front' | 'kind' | 'workers' | 'auth'>> {
  const args = ['-k', '-q', '-c', String(connections), '-t', String(o.seconds), '-n', '100000000', ...(o.head ? ['-i'] : []), ...o.headers.flatMap((header) => ['-H', header])];
  const cpu = new CpuMeter([o.front.pid]);
  const rss = new PeakRss([o.front.pid]).start();
  // ab runs for `seconds`; anything much longer means it hangs.
  const { requests, ...figures } = parseAb(await run('ab', [...args, o.url], { timeoutMs: (o.seconds + 50) * 1000 }));
  const cpuSeconds = cpu.read();
  return { ...figures, cpuPer10k: requests > 0 ? round((cpuSeconds * 10_000) / requests, 2) : 0, peakRss: rss.stop() };
}

/** One request before each run, so a wrong header shows as an error rather than a fast stream of 401s. */
async function expectOk(url: string, stage: Stage, headers: Record<string, string>): Promise<void> {
  if (!url.startsWith('https:')) return;
  const answer = await httpsGet(url, stage.ca, headers);
  if (answer.status !== 200) throw new Error(`GET ${url} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
}

export async function measureRates(o: { stage: Stage; seconds: number }): Promise<RateResult[]> {
  const results: RateResult[] = [];
  const manifestPath = `/v2/${stageRepository}/manifests/latest`;
  for (const front of o.stage.fronts) {
    const authorization = await pullAuthorization(o.stage, front);
    const headers: Record<string, string> = { Accept: ociManifestType, ...(authorization ? { Authorization: authorization } : {}) };
    const url = `${front.url}${manifestPath}`;
    await expectOk(url, o.stage, headers);
    const auth = authorization === undefined ? 'none' : authorization.startsWith('Bearer') ? 'bearer' : 'basic';
    progress(`ab: HEAD manifest, ${front.name}${auth === 'none' ? '' : ` (${auth})`}`);
    const figures = await runAb({ url, headers: Object.entries(headers).map(([name, value]) => `${name}: ${value}`), head: true, seconds: o.seconds, front });
    results.push({ request: 'head-manifest', front: front.name, kind: front.kind, workers: front.workers, auth, ...figures });
  }
  for (const front of o.stage.fronts.filter((candidate) => candidate.kind === 'gateway' && candidate.auth === 'token')) {
    const query = new URLSearchParams({ service: 'registry-gateway', scope: `repository:${stageRepository}:pull` });
    const url = `${front.url}/token?${query}`;
    await expectOk(url, o.stage, { Authorization: o.stage.basic });
    progress(`ab: GET /token with Basic, ${front.name}`);
    const figures = await runAb({ url, headers: [`Authorization: ${o.stage.basic}`], head: false, seconds: o.seconds, front });
    results.push({ request: 'token', front: front.name, kind: front.kind, workers: front.workers, auth: 'basic', ...figures });
  }
  return results;
}
