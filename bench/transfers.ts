// One client, the real one: skopeo pushes the image and pulls it back through each front, fresh servers every round.

import { copyFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { TestImage } from '../test/helpers/oci-image.js';
import { skopeoCopy, skopeoLogin, type PlainHttp, type SkopeoContext } from '../test/helpers/skopeo.js';
import { benchUser, startGateway, startNginx, startRegistry, startRegistryTls, tlsFilesOf, type Front } from './fronts.js';
import { CpuMeter, PeakRss, reapedChildrenCpuSeconds } from './proc-stats.js';
import { progress, Teardown, withTimeout } from './support.js';

export interface Transfer {
  seconds: number;
  /** CPU seconds of the front's processes (the registry's own for `direct` and `registry TLS`). */
  frontCpu: number;
  /** CPU seconds of the registry behind the front (0 when the front is the registry). */
  registryCpu: number;
  /** CPU seconds of skopeo. */
  clientCpu: number | undefined;
  /** Peak RSS of each of the front's processes during the transfer, MiB. */
  peakRss: number[];
}

export interface TransferResult {
  round: number;
  front: string;
  push: Transfer;
  pull: Transfer;
}

export interface TransferOptions {
  workDir: string;
  gatewayDir: string;
  image: TestImage;
  skopeo: SkopeoContext;
  password: string;
  rounds: number;
  transferTimeoutMs: number;
  /** Which fronts run: nginx and the registry's TLS may be missing on the machine. */
  withNginx: boolean;
  logger: Logger;
}

async function measured(what: string, front: Front, registryPid: number | undefined, timeoutMs: number, copy: () => Promise<void>): Promise<Transfer> {
  const sameProcess = front.pid === registryPid;
  const frontCpu = new CpuMeter([front.pid]);
  const registryCpu = new CpuMeter(sameProcess ? [] : [registryPid]);
  const rss = new PeakRss([front.pid]).start();
  const clientBefore = reapedChildrenCpuSeconds();
  const started = performance.now();
  await withTimeout(what, timeoutMs, copy());
  const seconds = (performance.now() - started) / 1000;
  const clientAfter = reapedChildrenCpuSeconds();
  return {
    seconds,
    frontCpu: frontCpu.read(),
    registryCpu: registryCpu.read(),
    clientCpu: clientBefore === undefined || clientAfter === undefined ? undefined : clientAfter - clientBefore,
    peakRss: rss.stop(),
  };
}

/** Pushes the image to a new repository through one front, then pulls it back into a new dir: folder. */
async function pushThenPull(o: TransferOptions & { front: Front; registryPid: number | undefined; round: number }): Promise<TransferResult> {
  const slug = o.front.name.replace(/[^a-z0-9]+/g, '-');
  const remote = `docker://${o.front.host}/bench/${slug}-round-${o.round}:latest`;
  const plain = (side: keyof PlainHttp): PlainHttp | undefined => (o.front.tls ? undefined : { [side]: true });
  const push = await measured(`push ${o.front.name} round ${o.round}`, o.front, o.registryPid, o.transferTimeoutMs, () =>
    skopeoCopy({ ...o.skopeo, from: o.image.reference, to: remote, plainHttp: plain('dest') }),
  );
  const pulled = path.join(o.workDir, `pulled-${slug}-${o.round}`);
  try {
    const pull = await measured(`pull ${o.front.name} round ${o.round}`, o.front, o.registryPid, o.transferTimeoutMs, () =>
      skopeoCopy({ ...o.skopeo, from: remote, to: `dir:${pulled}`, plainHttp: plain('src') }),
    );
    return { round: o.round, front: o.front.name, push, pull };
  } finally {
    await rm(pulled, { recursive: true, force: true });
  }
}

/** Each round starts the order one front later, so no front always goes first (or last) to spread machine noise. */
function rotate<T>(items: T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * skopeo remembers, per registry host, where it has seen a blob and mounts it from there instead
 * of uploading; new servers on new ports every round keep every push a full upload.
 */
export async function measureTransfers(o: TransferOptions): Promise<TransferResult[]> {
  const results: TransferResult[] = [];
  const files = tlsFilesOf(o.gatewayDir);
  for (let round = 1; round <= o.rounds; round++) {
    const teardown = new Teardown();
    try {
      const dataDir = path.join(o.workDir, `registry-round-${round}`);
      teardown.add('remove the round registry data', () => rm(dataDir, { recursive: true, force: true }));
      const { registry, direct } = await startRegistry(dataDir, o.logger, teardown);
      const gateway = await startGateway({ cwd: o.gatewayDir, upstream: registry.url, auth: 'token', workers: 1, teardown });
      await copyFile(files.ca, path.join(o.skopeo.certDir, 'ca.crt'));
      await withTimeout(`skopeo login to ${gateway.host}`, 60_000, skopeoLogin({ ...o.skopeo, host: gateway.host, user: benchUser, password: o.password }));
      const fronts = [direct, gateway];
      if (o.withNginx) fronts.push(await startNginx({ workDir: o.workDir, upstream: direct.host, files, workers: 1, teardown }));
      fronts.push(await startRegistryTls({ dataDir, files, teardown }));
      for (const front of rotate(fronts, round - 1)) {
        const result = await pushThenPull({ ...o, front, registryPid: registry.pid, round });
        results.push(result);
        progress(`round ${round} ${front.name.padEnd(12)} push ${result.push.seconds.toFixed(2)} s, pull ${result.pull.seconds.toFixed(2)} s`);
      }
    } finally {
      await teardown.run();
    }
  }
  return results;
}
