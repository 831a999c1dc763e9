// What happened, as typed events for metrics, the audit trail and webhooks: one source, read off each finished request and told by the parts that act.

/** Who did it: a user name, `anonymous`, or undefined when credentials came but were never read. */
export interface Actor {
  user: string | undefined;
  /** The client's address as the gateway saw it. */
  remote: string | undefined;
}

/** How a /v2/ request is counted: the route kinds of the registry API, plus the gateway's own. */
export type RouteKind = 'base' | 'catalog' | 'tags' | 'manifest' | 'blob' | 'upload' | 'referrers' | 'token' | 'other';

export interface RequestFinished extends Actor {
  type: 'request';
  method: string;
  route: RouteKind;
  repository?: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** False when the response did not reach its end (the client or the upstream went away). */
  completed: boolean;
  authenticator?: string;
  throttled?: boolean;
}

export interface ManifestPushed extends Actor {
  type: 'manifest.pushed';
  repository: string;
  /** The tag pushed, when the reference was a tag. */
  tag?: string;
  digest: string;
  mediaType?: string;
}

export interface ManifestDeleted extends Actor {
  type: 'manifest.deleted';
  repository: string;
  /** A tag (only that tag went) or a digest (every tag on it went). */
  reference: string;
}

export interface TagMoveRefused extends Actor {
  type: 'tag.move-refused';
  repository: string;
  tag: string;
  reason: string;
}

export interface LoginFailed extends Actor {
  type: 'login.failed';
  /** The user name tried (never the password). */
  authenticator?: string;
  reason: string;
}

export interface AccessDenied extends Actor {
  type: 'access.denied';
  /** What was refused, each with the rule that decided (as the access log writes it). */
  denied: { action: string; repository: string; rule: string }[];
  method: string;
  route: RouteKind;
  repository?: string;
}

export interface TokenIssued extends Actor {
  type: 'token.issued';
  /** The scopes granted, as `repository:name:actions`. */
  scopes: string[];
}

export interface CiTokenChanged extends Actor {
  type: 'ci-token.created' | 'ci-token.revoked';
  /** The token's id (never its secret) and the user it belongs to. */
  id: string;
  owner: string;
}

export interface ConfigReloaded {
  type: 'config.reloaded' | 'config.rejected';
  file: string;
  error?: string;
}

export interface MaintenanceSwitched {
  type: 'maintenance';
  on: boolean;
  by?: string;
}

export type GatewayEvent =
  | RequestFinished
  | ManifestPushed
  | ManifestDeleted
  | TagMoveRefused
  | LoginFailed
  | AccessDenied
  | TokenIssued
  | CiTokenChanged
  | ConfigReloaded
  | MaintenanceSwitched;

export type EventListener = (event: GatewayEvent) => void;

/**
 * Fans events out to listeners, synchronously and in order. A listener must be quick (queue its
 * work); one that throws is reported once per error and never breaks the request that told it.
 */
export class EventBus {
  readonly #listeners: EventListener[] = [];
  readonly #onListenerError: (error: unknown) => void;

  constructor(onListenerError: (error: unknown) => void = () => undefined) {
    this.#onListenerError = onListenerError;
  }

  /** Adds a listener; returns the function that removes it. */
  on(listener: EventListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const at = this.#listeners.indexOf(listener);
      if (at !== -1) this.#listeners.splice(at, 1);
    };
  }

  emit(event: GatewayEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }
}
