// Sends bytes exactly as given over TLS to a test gateway and reads the responses that come back.

import tls from 'node:tls';
import type { TestGateway } from './gateway.js';

export interface RawResponseHead {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawAnswer {
  responses: RawResponseHead[];
  statuses: number[];
  /** Everything the gateway sent, latin1. */
  text: string;
  /** Whether the gateway closed the connection (rather than the test, after the responses it waited for). */
  closedByGateway: boolean;
}

/** A raw TLS connection to the gateway, trusting only the test CA; `localAddress` picks the client address. */
export function rawConnect(gw: Pick<TestGateway, 'host' | 'ca'>, localAddress?: string): Promise<tls.TLSSocket> {
  const [host, port] = gw.host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername: host, ca: gw.ca, ...(localAddress ? { localAddress } : {}) }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Complete responses at the front of `text`; `methods` says which were to HEAD requests (no body). */
function parseResponses(text: string, methods: readonly string[]): RawResponseHead[] {
  const responses: RawResponseHead[] = [];
  let at = 0;
  for (;;) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd === -1) return responses;
    const lines = text.slice(at, headEnd).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0]!)?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let bodyStart = headEnd + 4;
    if (status === 100) {
      at = bodyStart;
      continue;
    }
    let body = '';
    if (methods[responses.length] !== 'HEAD' && status !== 204 && status !== 304) {
      if (headers['transfer-encoding'] === 'chunked') {
        for (;;) {
          const lineEnd = text.indexOf('\r\n', bodyStart);
          if (lineEnd === -1) return responses;
          const size = Number.parseInt(text.slice(bodyStart, lineEnd), 16);
          if (text.length < lineEnd + 2 + size + 2) return responses;
          body += text.slice(lineEnd + 2, lineEnd + 2 + size);
          bodyStart = lineEnd + 2 + size + 2;
          if (size === 0) break;
        }
      } else {
        const length = Number(headers['content-length'] ?? '0');
        if (text.length < bodyStart + length) return responses;
        body = text.slice(bodyStart, bodyStart + length);
        bodyStart += length;
      }
    }
    responses.push({ status, headers, body });
    at = bodyStart;
  }
}

/**
 * Sends `bytes` and reads until the gateway closes the connection or has sent one complete
 * response per entry of `methods` (then the test closes it). The guard only stops a hang.
 */
export async function rawExchange(
  gw: Pick<TestGateway, 'host' | 'ca'>,
  bytes: string | Buffer,
  options: { methods?: readonly string[]; localAddress?: string; guardMs?: number } = {},
): Promise<RawAnswer> {
  const methods = options.methods ?? ['GET'];
  const socket = await rawConnect(gw, options.localAddress);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let closedByTest = false;
    const text = () => Buffer.concat(chunks).toString('latin1');
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer and no close within ${options.guardMs ?? 20_000} ms; got: ${text().slice(0, 500)}`));
    }, options.guardMs ?? 20_000);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (parseResponses(text(), methods).length >= methods.length) {
        closedByTest = true;
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(guard);
      const all = text();
      const responses = parseResponses(all, methods);
      resolve({ responses, statuses: responses.map((r) => r.status), text: all, closedByGateway: !closedByTest });
    });
    socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}
