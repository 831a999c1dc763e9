// A bare HTTP/1.1 upstream on a plain TCP socket that records every request head it parses, the way a registry would frame them.

import net from 'node:net';

export interface RecordedRequest {
  method: string;
  target: string;
  /** Header lines as received, names lowercased, in order. */
  headers: [name: string, value: string][];
  bodyBytes: number;
  body: Buffer;
}

export interface RecordingUpstream {
  url: string;
  /** Requests in arrival order, health probes of /v2/ left out. */
  requests: RecordedRequest[];
  header(request: RecordedRequest, name: string): string[];
  /** Requests arrive one at a time; resolves once `count` are recorded. */
  waitFor(count: number): Promise<void>;
  /** Connections the gateway closed in the middle of a request (a head or body cut short). */
  cutShort(): number;
  /** Resolves once `count` connections have been cut short. */
  waitForCutShort(count: number): Promise<void>;
  /** Resolves once a connection holds the unfinished start of a request that includes `text`. */
  waitForPartial(text: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Parses requests off each connection strictly by their own Content-Length or chunked framing and
 * answers each at once, so bytes the gateway writes outside any framing show up as extra requests.
 * Targets starting with /v2/stall/ are recorded and never answered.
 */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const cutWaiters: { count: number; resolve: () => void }[] = [];
  let cutShort = 0;
  const partialWaiters: { text: string; resolve: () => void }[] = [];
  const sockets = new Set<net.Socket>();
  const record = (request: RecordedRequest) => {
    if (request.method === 'GET' && request.target === '/v2/') return;
    requests.push(request);
    for (const waiter of waiters.filter((w) => requests.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    let buffer = Buffer.alloc(0);
    socket.on('close', () => {
      sockets.delete(socket);
      if (buffer.length === 0) return;
      cutShort++;
      for (const waiter of cutWaiters.filter((w) => cutShort >= w.count)) {
        cutWaiters.splice(cutWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const parsed = parseOne(buffer);
        if (parsed === undefined) {
          const pending = buffer.toString('latin1');
          for (const waiter of partialWaiters.filter((w) => pending.includes(w.text))) {
            partialWaiters.splice(partialWaiters.indexOf(waiter), 1);
            waiter.resolve();
          }
          return;
        }
        buffer = buffer.subarray(parsed.consumed);
        record(parsed.request);
        if (parsed.request.target.startsWith('/v2/stall/')) continue;
        const body = parsed.request.method === 'HEAD' ? '' : '{}';
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n${body}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    header: (request, name) => request.headers.filter(([n]) => n === name).map(([, v]) => v),
    waitFor: (count) => (requests.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
    cutShort: () => cutShort,
    waitForPartial: (text) => new Promise((resolve) => partialWaiters.push({ text, resolve })),
    waitForCutShort: (count) => (cutShort >= count ? Promise.resolve() : new Promise((resolve) => cutWaiters.push({ count, resolve }))),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** One request off the front of `buffer`, or undefined when it is not all there yet. */
function parseOne(buffer: Buffer): { request: RecordedRequest; consumed: number } | undefined {
  const headEnd = buffer.indexOf('\r\n\r\n');
  if (headEnd === -1) return undefined;
  const lines = buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
  const [method = '', target = ''] = lines[0]!.split(' ');
  const headers = lines.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  const value = (name: string) => headers.find(([n]) => n === name)?.[1];
  let at = headEnd + 4;
  if (value('transfer-encoding')?.toLowerCase() === 'chunked') {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', at);
      if (lineEnd === -1) return undefined;
      const size = Number.parseInt(buffer.subarray(at, lineEnd).toString('latin1'), 16);
      if (buffer.length < lineEnd + 2 + size + 2) return undefined;
      parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
      if (size === 0) break;
    }
    const body = Buffer.concat(parts);
    return { request: { method, target, headers, bodyBytes: body.length, body }, consumed: at };
  }
  const length = Number(value('content-length') ?? '0');
  if (buffer.length < at + length) return undefined;
  const body = Buffer.from(buffer.subarray(at, at + length));
  return { request: { method, target, headers, bodyBytes: length, body }, consumed: at + length };
}
