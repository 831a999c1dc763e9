// The long-lived set-up for the concurrent pulls and the request rates: one registry with the image, and every front before it.

import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { TestImage } from '../test/helpers/oci-image.js';
import { skopeoCopy, type SkopeoContext } from '../test/helpers/skopeo.js';
import { benchUser, startGateway, startNginx, startRegistry, startRegistryTls, tlsFilesOf, type Front } from './fronts.js';
import { httpsGet, withTimeout, type Teardown } from './support.js';

/** The repository the image is pushed to once, for every front to serve. */
export const stageRepository = 'bench/stage';
export const ociManifestType = 'application/vnd.oci.image.manifest.v1+json';

export interface Stage {
  /** direct, registry TLS, then per worker count: nginx, gateway (token), gateway (basic). */
  fronts: Front[];
  image: TestImage;
  ca: Buffer;
  caPath: string;
  basic: string;
  /** A Bearer token for `scope` from a token-mode gateway, fresh for each use (tokens expire). */
  bearer(front: Front, scope: string): Promise<string>;
}

/** A token from the gateway's /token with Basic auth. */
async function fetchToken(front: Front, ca: Buffer, basic: string, scope: string): Promise<string> {
  const query = new URLSearchParams({ service: 'registry-gateway', scope });
  const answer = await httpsGet(`${front.url}/token?${query}`, ca, { Authorization: basic });
  if (answer.status !== 200) throw new Error(`GET /token on ${front.name} answered ${answer.status}: ${answer.body}`);
  return `Bearer ${(JSON.parse(answer.body) as { token: string }).token}`;
}

export async function startStage(o: {
  workDir: string;
  gatewayDir: string;
  image: TestImage;
  skopeo: SkopeoContext;
  password: string;
  workers: number[];
  withNginx: boolean;
  transferTimeoutMs: number;
  logger: Logger;
  teardown: Teardown;
}): Promise<Stage> {
  const dataDir = path.join(o.workDir, 'registry-stage');
  const files = tlsFilesOf(o.gatewayDir);
  const { registry, direct } = await startRegistry(dataDir, o.logger, o.teardown);
  await withTimeout('pushing the image for the stage', o.transferTimeoutMs, skopeoCopy({ ...o.skopeo, from: o.image.reference, to: `docker://${direct.host}/${stageRepository}:latest`, plainHttp: { dest: true } }));
  const fronts: Front[] = [direct, await startRegistryTls({ dataDir, files, teardown: o.teardown })];
  for (const workers of o.workers) {
    if (o.withNginx) fronts.push(await startNginx({ workDir: o.workDir, upstream: direct.host, files, workers, teardown: o.teardown }));
    fronts.push(await startGateway({ cwd: o.gatewayDir, upstream: registry.url, auth: 'token', workers, teardown: o.teardown }));
    fronts.push(await startGateway({ cwd: o.gatewayDir, upstream: registry.url, auth: 'basic', workers, teardown: o.teardown }));
  }
  await copyFile(files.ca, path.join(o.skopeo.certDir, 'ca.crt'));
  const ca = await readFile(files.ca);
  const basic = `Basic ${Buffer.from(`${benchUser}:${o.password}`).toString('base64')}`;
  return { fronts, image: o.image, ca, caPath: files.ca, basic, bearer: (front, scope) => fetchToken(front, ca, basic, scope) };
}

/** The Authorization header a front needs to pull the stage image, if any. */
export async function pullAuthorization(stage: Stage, front: Front): Promise<string | undefined> {
  if (front.kind !== 'gateway') return undefined;
  return front.auth === 'basic' ? stage.basic : stage.bearer(front, `repository:${stageRepository}:pull`);
}
