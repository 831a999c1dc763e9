// Request-smuggling carriers: raw HTTP/1.1 requests whose framing a gateway and a registry might read differently.

export interface Carrier {
  name: string;
  bytes: string;
  /** Methods of the responses the client should get (one per request the gateway accepts as such). */
  methods: string[];
  /** The status the gateway answers with. */
  status: number;
  /** "METHOD target" of each request that must reach the registry; empty when refused. */
  upstream: string[];
}

/**
 * 1,100 short header lines (under Node's 16 KiB header limit): more than the thousand Node keeps
 * in req.headers, while its parser still frames the body on a Content-Length or
 * Transfer-Encoding that follows them.
 */
export const filler = Array.from({ length: 1100 }, (_, i) => `${i.toString(36)}:x\r\n`).join('');

/** `body` as one chunk of a chunked body, and the last chunk. */
export function chunked(body: string): string {
  return `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
}

/**
 * Carriers around a `smuggled` request (a complete request head, e.g. a DELETE of another user's
 * manifest) on a `target` the caller may pull. Each either is refused outright or reaches the
 * registry as exactly the one request the gateway parsed.
 */
export function carriers(host: string, token: string, target: string, smuggled: string): Carrier[] {
  const head = (method: string, lines: string) => `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n${lines}`;
  const get = `GET ${target}`;
  const refused = (name: string, bytes: string, status = 400, method = 'GET'): Carrier => ({ name, bytes, methods: [method], status, upstream: [] });
  return [
    refused('Content-Length after 1,100 header lines', `${head('GET', filler)}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`, 431),
    refused('Transfer-Encoding after 1,100 header lines', `${head('GET', filler)}Transfer-Encoding: chunked\r\n\r\n${chunked(smuggled)}`, 431),
    refused('Content-Length and Transfer-Encoding after 1,100 header lines', `${head('GET', filler)}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled)}`),
    refused('101 header lines and no body at all', `${head('GET', Array.from({ length: 99 }, (_, i) => `X-Line-${i}: x\r\n`).join(''))}\r\n`, 431),
    refused('GET with a Content-Length body', `${head('GET', `Content-Length: ${smuggled.length}\r\n`)}\r\n${smuggled}`),
    refused('GET with a chunked body', `${head('GET', 'Transfer-Encoding: chunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('GET with Content-Length 1000 and no body', `${head('GET', 'Content-Length: 1000\r\n')}\r\n`),
    refused('HEAD with a body', `${head('HEAD', `Content-Length: ${smuggled.length}\r\n`)}\r\n${smuggled}`, 400, 'HEAD'),
    refused('DELETE with a body', `${head('DELETE', `Content-Length: ${smuggled.length}\r\n`)}\r\n${smuggled}`, 400, 'DELETE'),
    refused('Content-Length and Transfer-Encoding', `${head('GET', `Content-Length: ${smuggled.length}\r\nTransfer-Encoding: chunked\r\n`)}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding folded onto a second line', `${head('GET', 'Transfer-Encoding:\r\n chunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding: chunked, identity', `${head('GET', 'Transfer-Encoding: chunked, identity\r\n')}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding: identity, chunked', `${head('GET', 'Transfer-Encoding: identity, chunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding: xchunked', `${head('GET', 'Transfer-Encoding: xchunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding: Chunked', `${head('GET', 'Transfer-Encoding: Chunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('Transfer-Encoding twice', `${head('GET', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n')}\r\n${chunked(smuggled)}`),
    refused('Content-Length twice', `${head('GET', `Content-Length: ${smuggled.length}\r\nContent-Length: ${smuggled.length}\r\n`)}\r\n${smuggled}`),
    refused('Content-Length twice, differing', `${head('GET', `Content-Length: 0\r\nContent-Length: ${smuggled.length}\r\n`)}\r\n${smuggled}`),
    { name: 'GET with Content-Length: 0 (forwarded, nothing smuggled)', bytes: `${head('GET', 'Content-Length: 0\r\n')}\r\n`, methods: ['GET'], status: 200, upstream: [get] },
    {
      name: 'two pipelined GETs (each forwarded once)',
      bytes: `${head('GET', '')}\r\n${head('GET', '')}\r\n`,
      methods: ['GET', 'GET'],
      status: 200,
      upstream: [get, get],
    },
  ];
}
