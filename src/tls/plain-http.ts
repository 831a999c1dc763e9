// Answers one plain-HTTP request without the app (on the TLS port, or the optional HTTP port): an ACME http-01 answer, a redirect to https for GET/HEAD, else 400.
import type { Socket } from 'node:net';
import { RegistryError } from '../errors.js';

export interface PlainHttpOptions {
  /** The https host[:port] to send a client to, from its Host header; undefined when the header is not acceptable. */
  redirectHost(hostHeader: string | undefined): string | undefined;
  /** Told what was answered, for the log. */
  onAnswer?(answer: PlainHttpAnswer): void;
  /** The key authorization for an ACME http-01 token being validated; only on the plain-HTTP port. */
  acmeHttp?(token: string): string | undefined;
}

export interface PlainHttpAnswer {
  method: string | undefined;
  target: string | undefined;
  status: number;
  remoteAddress: string | undefined;
}

/** Go's words for the same mistake, which registry clients already show to users. */
export const PLAIN_HTTP_MESSAGE = 'Client sent an HTTP request to an HTTPS server.';
/** Enough for a request line and a Host header; a plain-HTTP request has nothing more to tell. */
const MAX_HEAD_BYTES = 8 * 1024;
/** After answering, the client's unread bytes are drained this long, so that closing does not reset the answer away. */
const LINGER_MS = 2_000;

const REQUEST_LINE = /^([A-Z]{1,16}) (\S{1,4096}) HTTP\/1\.[01]$/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;
/** An origin-form target in visible ASCII: nothing that could break out of a Location header. */
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
/** RFC 8555 section 8.3: the token is base64url. */
const ACME_CHALLENGE = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;

/**
 * Reads the request head from `socket` (the caller bounds the time with the socket's timeout) and
 * answers. Following the redirect, docker's plain-HTTP fallback for loopback registries reaches the
 * TLS port again and shows the real answer (401 and its reason) instead of a bare EOF.
 */
export function answerPlainHttp(socket: Socket, options: PlainHttpOptions): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    const head = Buffer.concat(chunks, size);
    const end = head.indexOf('\r\n\r\n');
    if (end === -1 && size <= MAX_HEAD_BYTES) return;
    socket.off('data', onData);
    const request = end === -1 || end > MAX_HEAD_BYTES ? undefined : parseHead(head.subarray(0, end).toString('latin1'));
    const challenge = request && options.acmeHttp ? acmeAnswer(request, options.acmeHttp) : undefined;
    if (challenge !== undefined) {
      options.onAnswer?.({ method: request?.method, target: request?.target, status: challenge.status, remoteAddress: socket.remoteAddress });
      reply(socket, challenge.response);
      return;
    }
    const location = request ? redirectTarget(request, options) : undefined;
    const status = location === undefined ? 400 : 301;
    options.onAnswer?.({ method: request?.method, target: request?.target, status, remoteAddress: socket.remoteAddress });
    reply(socket, location === undefined ? badRequest(request?.method === 'HEAD') : redirect(location));
  };
  socket.on('data', onData);
}

interface PlainRequest {
  method: string;
  target: string;
  hosts: string[];
}

function parseHead(head: string): PlainRequest | undefined {
  const [requestLine = '', ...headerLines] = head.split('\r\n');
  const match = REQUEST_LINE.exec(requestLine);
  if (!match) return undefined;
  const hosts: string[] = [];
  for (const line of headerLines) {
    const header = HEADER_LINE.exec(line);
    // Folded or malformed lines are refused, as a strict HTTP parser does.
    if (!header) return undefined;
    if (header[1]!.toLowerCase() === 'host') hosts.push(header[2]!);
  }
  return { method: match[1]!, target: match[2]!, hosts };
}

function redirectTarget(request: PlainRequest, options: PlainHttpOptions): string | undefined {
  // Only requests without a body are sent on: a body would have been read, and maybe sent, in clear text.
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined;
  if (!ORIGIN_FORM.test(request.target) || request.hosts.length > 1) return undefined;
  const host = options.redirectHost(request.hosts[0]);
  return host === undefined ? undefined : `https://${host}${request.target}`;
}

/** An ACME validator's GET of a challenge token: the key authorization while that token is pending, else 404. */
function acmeAnswer(request: PlainRequest, keyAuthorization: (token: string) => string | undefined): { status: number; response: string } | undefined {
  const match = ACME_CHALLENGE.exec(request.target);
  if (!match || (request.method !== 'GET' && request.method !== 'HEAD')) return undefined;
  const body = keyAuthorization(match[1]!);
  if (body === undefined) return { status: 404, response: head('404 Not Found', ['Content-Length: 0']) };
  const lines = ['Content-Type: application/octet-stream', `Content-Length: ${Buffer.byteLength(body)}`];
  return { status: 200, response: head('200 OK', lines) + (request.method === 'HEAD' ? '' : body) };
}

function redirect(location: string): string {
  return head('301 Moved Permanently', [`Location: ${location}`, 'Content-Length: 0']);
}

function badRequest(isHead: boolean): string {
  const body = JSON.stringify(new RegistryError('UNSUPPORTED', PLAIN_HTTP_MESSAGE, undefined, 400).toBody());
  const lines = ['Content-Type: application/json; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`];
  return head('400 Bad Request', lines) + (isHead ? '' : body);
}

function head(status: string, lines: string[]): string {
  const common = ['Connection: close', 'Cache-Control: no-store', 'Docker-Distribution-Api-Version: registry/2.0'];
  return `HTTP/1.1 ${status}\r\n${[...lines, ...common].join('\r\n')}\r\n\r\n`;
}

/** One answer, then the connection ends; what the client still sends is read and dropped until it closes. */
function reply(socket: Socket, response: string): void {
  socket.end(response, 'latin1');
  socket.resume();
  socket.setTimeout(LINGER_MS, () => socket.destroy());
}
