// The public host of a request: the configured public URL's, or the request's Host header when it is a valid one.

import type { Request } from 'express';
import type { Config } from './config/config.js';
import { RegistryError } from './errors.js';

/** A Host header as clients send it: name or [IPv6], optional port. Anything else never reaches a realm. */
const hostHeaderPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** The public host[:port] for a Host header: configured, or the header when valid; undefined when neither. */
export function publicHostFor(config: Readonly<Config>, host: string | undefined): string | undefined {
  if (config.publicUrl) return config.publicUrl.host;
  return host !== undefined && hostHeaderPattern.test(host) ? host.toLowerCase() : undefined;
}

/** The public host[:port] of a request: configured, or its validated Host header. */
export function publicHostResolver(config: Readonly<Config>) {
  return function publicHost(req: Request): string {
    const host = publicHostFor(config, req.headers.host);
    if (host === undefined) throw new RegistryError('UNSUPPORTED', 'missing or malformed Host header', undefined, 400);
    return host;
  };
}
