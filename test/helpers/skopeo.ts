// Runs the real skopeo client with its own auth file and cert dir, so tests never touch ~/.config.
import { execFile } from 'node:child_process';

/** Where skopeo keeps credentials and finds the CA (a folder holding ca.crt) for this test. */
export interface SkopeoContext {
  certDir: string;
  authFile: string;
}

/**
 * Plain HTTP without certificate checks, for the bare registry on loopback only: the gateway is
 * always reached over verified TLS.
 */
export interface PlainHttp {
  src?: boolean;
  dest?: boolean;
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

function assertLoopbackHost(hostAndPort: string): void {
  if (!loopbackHosts.has(hostAndPort.replace(/:\d+$/, ''))) {
    throw new Error(`plain HTTP is only allowed on loopback, not ${hostAndPort}`);
  }
}

function assertLoopbackDockerReference(reference: string): void {
  const match = /^docker:\/\/([^/]+)\//.exec(reference);
  if (!match?.[1]) throw new Error(`plain HTTP is only allowed for a docker:// reference, not ${reference}`);
  assertLoopbackHost(match[1]);
}

function runSkopeo(args: string[], context: SkopeoContext, stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'skopeo',
      args,
      { env: { ...process.env, REGISTRY_AUTH_FILE: context.authFile }, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const status = error.code ?? error.signal ?? 'unknown status';
          reject(new Error(`skopeo ${args[0]} failed (${status}): ${stderr.trim() || error.message}`));
          return;
        }
        resolve(stdout);
      },
    );
    child.stdin?.end(stdin ?? '');
  });
}

/** Logs in to HOST:PORT, storing the credentials in authFile only. */
export async function skopeoLogin(
  o: SkopeoContext & { host: string; user: string; password: string; plainHttp?: boolean },
): Promise<void> {
  const tlsArgs: string[] = [];
  if (o.plainHttp) {
    assertLoopbackHost(o.host);
    tlsArgs.push('--tls-verify=false');
  }
  await runSkopeo(
    ['login', '--authfile', o.authFile, '--cert-dir', o.certDir, ...tlsArgs, '--username', o.user, '--password-stdin', o.host],
    o,
    o.password,
  );
}

/** Copies an image between any two transports, keeping exact bytes (--preserve-digests). */
export async function skopeoCopy(
  o: SkopeoContext & { from: string; to: string; extraArgs?: string[]; plainHttp?: PlainHttp },
): Promise<void> {
  const tlsArgs: string[] = [];
  if (o.plainHttp?.src) {
    assertLoopbackDockerReference(o.from);
    tlsArgs.push('--src-tls-verify=false');
  }
  if (o.plainHttp?.dest) {
    assertLoopbackDockerReference(o.to);
    tlsArgs.push('--dest-tls-verify=false');
  }
  await runSkopeo(
    [
      'copy',
      '--authfile', o.authFile,
      '--src-cert-dir', o.certDir,
      '--dest-cert-dir', o.certDir,
      '--preserve-digests',
      ...tlsArgs,
      ...(o.extraArgs ?? []),
      o.from,
      o.to,
    ],
    o,
  );
}

/** What `skopeo inspect` reports about an image (the fields tests use). */
export interface SkopeoInspection {
  Digest: string;
  Layers: string[];
  Architecture?: string;
  Os?: string;
}

export async function skopeoInspect(
  o: SkopeoContext & { image: string; plainHttp?: boolean },
): Promise<SkopeoInspection> {
  const tlsArgs: string[] = [];
  if (o.plainHttp) {
    assertLoopbackDockerReference(o.image);
    tlsArgs.push('--tls-verify=false');
  }
  const stdout = await runSkopeo(['inspect', '--authfile', o.authFile, '--cert-dir', o.certDir, ...tlsArgs, o.image], o);
  return JSON.parse(stdout) as SkopeoInspection;
}

/** The manifest digest of an image, as skopeo computes it. */
export async function skopeoInspectDigest(o: SkopeoContext & { image: string; plainHttp?: boolean }): Promise<string> {
  return (await skopeoInspect(o)).Digest;
}
