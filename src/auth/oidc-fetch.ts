// HTTP for the OpenID Connect client: node's https with the provider's own CA bundle, no redirects followed, answers bounded in size.

import http from 'node:http';
import https from 'node:https';

/** Discovery documents, JWKS and token answers are small; anything bigger is not an identity provider's. */
const maxResponseBytes = 1024 * 1024;

export type FetchLike = (url: string, options: { method: string; headers: Record<string, string>; body?: unknown; signal?: AbortSignal }) => Promise<Response>;

/** The request could not be made or answered: the identity provider is down, unreachable or not speaking HTTP. */
export class IssuerUnreachableError extends Error {
  override readonly name = 'IssuerUnreachableError';
}

function bodyBytes(body: unknown): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (body instanceof URLSearchParams || typeof body === 'string') return Buffer.from(body.toString(), 'utf8');
  if (body instanceof Uint8Array) return Buffer.from(body);
  throw new Error('unsupported request body');
}

/**
 * A fetch for openid-client's customFetch: GET and POST over https (http only where the configuration
 * allowed it: a loopback issuer), trusting only `caPem` when given. Redirects are answered as they
 * come (openid-client refuses them); failures to connect are IssuerUnreachableErrors.
 */
export function issuerFetch(caPem: string | undefined): FetchLike {
  return (url, options) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== 'https:' && target.protocol !== 'http:') {
        reject(new Error(`${target.protocol} URLs are not fetched`));
        return;
      }
      const body = bodyBytes(options.body);
      const headers: Record<string, string> = { ...options.headers };
      if (body !== undefined) headers['content-length'] = String(body.length);
      const requestOptions: https.RequestOptions = { method: options.method, headers, agent: false };
      if (options.signal !== undefined) requestOptions.signal = options.signal;
      if (caPem !== undefined) requestOptions.ca = caPem;
      const client = target.protocol === 'https:' ? https : http;
      const request = client.request(target, requestOptions, (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxResponseBytes) request.destroy(new IssuerUnreachableError(`${target.origin} answered more than ${maxResponseBytes} bytes`));
          else chunks.push(chunk);
        });
        response.on('end', () => {
          if (status < 200 || status > 599) {
            reject(new IssuerUnreachableError(`${target.origin} answered with status ${status}`));
            return;
          }
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            if (typeof value === 'string') answerHeaders.set(name, value);
            else if (Array.isArray(value)) for (const each of value) answerHeaders.append(name, each);
          }
          const empty = status === 204 || status === 205 || status === 304;
          resolve(new Response(empty ? null : Buffer.concat(chunks), { status, headers: answerHeaders }));
        });
        response.on('error', (error) => reject(new IssuerUnreachableError(error.message)));
        response.on('close', () => {
          if (!response.complete) reject(new IssuerUnreachableError(`${target.origin}: the answer was cut short`));
        });
      });
      request.on('error', (error) => reject(error instanceof IssuerUnreachableError ? error : new IssuerUnreachableError(`${target.origin}: ${error.message}`)));
      request.end(body);
    });
}
