// What ACME tests share: waiting for a condition, and the certificate a new TLS connection is shown for a name.

import type { X509Certificate } from 'node:crypto';
import tls from 'node:tls';

/** Polls until `check` holds, failing with `what` after `ms`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The certificate a new TLS connection to 127.0.0.1:`port` is shown for `servername`, verified against `root` only. */
export function servedCertificate(port: number, servername: string, root: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: root, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (cert) resolve(cert);
      else reject(new Error('no peer certificate'));
    });
    socket.on('error', reject);
  });
}
