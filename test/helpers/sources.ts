// HTTPS clients bound to a chosen loopback source address, with connections opened before the requests that matter.

import https from 'node:https';
import type { TestGateway } from './gateway.js';

export interface SourcedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Position among every response this client received, from 1. */
  order: number;
}

/** Every client shares this counter, so responses of different sources can be ordered too. */
let answered = 0;

/**
 * Requests from one source address (127.0.0.2, 127.0.0.3, ... all reach a server on 127.0.0.1, and
 * the server sees them as different clients). open(n) first sets up n keep-alive connections, so
 * that n later requests go out together, with no handshake between them.
 */
export class SourceClient {
  readonly #agent: https.Agent;
  readonly #port: number;

  constructor(
    gw: Pick<TestGateway, 'host' | 'ca'>,
    readonly localAddress: string,
  ) {
    this.#port = Number(gw.host.split(':')[1]);
    this.#agent = new https.Agent({ keepAlive: true, maxSockets: Infinity, ca: gw.ca, localAddress, servername: 'localhost' });
  }

  async open(connections: number): Promise<void> {
    await Promise.all(Array.from({ length: connections }, () => this.get('/healthz')));
  }

  get(target: string, headers: Record<string, string> = {}): Promise<SourcedResponse> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: this.#port, method: 'GET', path: target, headers, agent: this.#agent, servername: 'localhost' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), order: ++answered }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** The access log's request lines, parsed. */
export function requestLines(gw: Pick<TestGateway, 'logLines'>): Record<string, any>[] {
  return gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request');
}

/** Waits (briefly) for the log line of a request whose response has arrived: it is written when the exchange closes. */
export async function logLineFor(gw: Pick<TestGateway, 'logLines'>, match: (entry: Record<string, any>) => boolean): Promise<Record<string, any>> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const found = requestLines(gw).findLast(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('no such log line');
}
