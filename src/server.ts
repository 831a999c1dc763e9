// The HTTPS server: TLS, timeouts fit for multi-GB transfers, and a graceful close. No routes.

import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { ListenAddress } from './config.js';

export interface HttpsServerOptions {
  cert: string | Buffer;
  key: string | Buffer;
  listen: ListenAddress;
}

export interface RunningServer {
  server: https.Server;
  address: AddressInfo;
  /** Stops accepting, lets requests in flight finish for up to graceMs, then cuts what is left. */
  close(graceMs: number): Promise<void>;
}

export async function startHttpsServer(listener: RequestListener, options: HttpsServerOptions): Promise<RunningServer> {
  const server = https.createServer(
    {
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      // Blob transfers may run for many minutes: no whole-request deadline (Node's default is 300 s)...
      requestTimeout: 0,
      // ...but headers must arrive promptly, so idle or slow-header connections cannot pile up.
      headersTimeout: 30_000,
      keepAliveTimeout: 75_000,
      // Node's 16 KiB header limit stays: oversized headers get 431.
    },
    listener,
  );
  server.timeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const close = (graceMs: number) => {
    closing ??= new Promise<void>((resolve) => {
      const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
      deadline.unref();
      server.close(() => {
        clearTimeout(deadline);
        resolve();
      });
      server.closeIdleConnections();
    });
    return closing;
  };
  return { server, address, close };
}
