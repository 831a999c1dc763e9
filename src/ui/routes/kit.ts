// What every page route uses: the frame of the page for this visitor, sending HTML, and handlers whose failures become pages (never a stack trace).

import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { publicHostFor } from '../../public-host.js';
import type { Config } from '../../config/config.js';
import { RegistryUnavailable } from '../browse/model.js';
import { messagePage, type Frame } from '../pages/layout.js';
import type { SessionCookies } from '../session.js';
import { webOf, type WebGuard } from '../web-context.js';

export interface WebKit {
  config: Readonly<Config>;
  guard: WebGuard;
  sessions: SessionCookies;
  logger: Logger;
  /** The browse pages and the password sign-in are on (GATEWAY_UI). */
  browse: boolean;
  /** The OIDC sign-in provider's name, when one is configured. */
  provider: string | undefined;
  now(): number;
}

/** A Host header the gateway would not put in a link. */
class BadHost extends Error {}

export function hostOf(kit: WebKit, req: Request): string {
  const host = publicHostFor(kit.config, req.headers.host);
  if (host === undefined) throw new BadHost('missing or malformed Host header');
  return host;
}

/** The page frame for this visitor: who is signed in and the sign-out form's token. */
export function frameOf(kit: WebKit, req: Request, res: Response, current?: Frame['current']): Frame {
  const web = webOf(res);
  const frame: Frame = { brand: hostOf(kit, req), browse: kit.browse, signInPath: kit.browse ? '/sign-in' : '/login', ...(current === undefined ? {} : { current }) };
  if (web.session === undefined) return frame;
  return { ...frame, user: web.session.data.user, csrf: kit.guard.csrfFor(req, res, web.session) };
}

export function sendPage(res: Response, status: number, body: string): void {
  res.status(status).type('html').send(body);
}

export function notFound(kit: WebKit, req: Request, res: Response): void {
  sendPage(res, 404, messagePage(frameOf(kit, req, res), 'Not found', 'There is nothing here, or nothing you may see.', { link: { href: kit.browse ? '/' : '/tokens', text: kit.browse ? 'Repositories' : 'Access tokens' } }));
}

/** A POST whose form is not this page's: refused before anything is done. */
export function refuseForm(kit: WebKit, req: Request, res: Response, problem: string): void {
  kit.logger.warn({ user: webOf(res).session?.data.user, reason: problem, path: req.path }, 'form refused: cross-site request');
  res.locals.reason = `form refused: ${problem}`;
  sendPage(res, 403, messagePage(frameOf(kit, req, res), 'Request refused', 'This form did not come from this site, or the page was too old. Go back, reload the page and try again.', { alert: true }));
}

/** Runs a page handler: the registry down is a 503 page, anything unexpected a logged 500 page. */
export function handle(kit: WebKit, handler: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return async (req, res) => {
    try {
      await handler(req, res);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof BadHost) {
        res.status(400).type('text/plain').send('Bad request: missing or malformed Host header\n');
        return;
      }
      let frame: Frame;
      try {
        frame = frameOf(kit, req, res);
      } catch {
        frame = { brand: 'Registry', browse: kit.browse, signInPath: kit.browse ? '/sign-in' : '/login' };
      }
      if (error instanceof RegistryUnavailable) {
        kit.logger.warn({ err: error.message, path: req.path }, 'web page: registry unavailable');
        res.set('Retry-After', '10');
        sendPage(res, 503, messagePage(frame, 'Registry unavailable', 'The registry does not answer right now. Try again in a moment.'));
        return;
      }
      kit.logger.error({ err: error, path: req.path }, 'web page failed');
      sendPage(res, 500, messagePage(frame, 'Something went wrong', 'The gateway could not finish this request. Try again later.'));
    }
  };
}
