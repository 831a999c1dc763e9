// What a webhook receiver gets: a CloudEvents 1.0 JSON event (structured mode) for a push or delete, and the HMAC-SHA256 signature over it.

import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import type { GatewayEvent, ManifestDeleted, ManifestPushed } from './events.js';
import type { WebhookConfig, WebhookEvent } from './webhook-config.js';

/** The CloudEvents `type` prefix: `io.registry-gateway.manifest.pushed`, `...manifest.deleted`. */
export const cloudEventTypePrefix = 'io.registry-gateway.';
export const signatureHeader = 'x-gateway-signature';
export const timestampHeader = 'x-gateway-timestamp';

/** An event ready to send: its body is the same bytes for every attempt and every receiver. */
export interface Payload {
  id: string;
  type: string;
  subject: string;
  repository: string;
  /** The tag pushed or deleted, when the reference was a tag. */
  tag: string | undefined;
  kind: WebhookEvent;
  contentType: string;
  body: string;
}

/** cloudevents (CommonJS), loaded at the first event offered to a webhook: only gateways with webhooks need it. */
let cloudevents: typeof import('cloudevents') | undefined;
function cloudEvents(): typeof import('cloudevents') {
  return (cloudevents ??= createRequire(import.meta.url)('cloudevents') as typeof import('cloudevents'));
}

const isDigest = (reference: string) => /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(reference);

function dataOf(event: ManifestPushed | ManifestDeleted): Record<string, string> {
  const user = event.user === undefined || event.user === '' ? 'unknown' : event.user;
  if (event.type === 'manifest.pushed') {
    return { repository: event.repository, ...(event.tag !== undefined ? { tag: event.tag } : {}), digest: event.digest, ...(event.mediaType ? { mediaType: event.mediaType } : {}), user };
  }
  return { repository: event.repository, ...(isDigest(event.reference) ? { digest: event.reference } : { tag: event.reference }), user };
}

/** The payload of a push or a delete; undefined for every other event. `source`: the gateway, as a URI. */
export function payloadOf(event: GatewayEvent, source: string, time: Date): Payload | undefined {
  if (event.type !== 'manifest.pushed' && event.type !== 'manifest.deleted') return undefined;
  const data = dataOf(event);
  const subject = data.tag !== undefined ? `${event.repository}:${data.tag}` : `${event.repository}@${data.digest}`;
  const { CloudEvent, HTTP } = cloudEvents();
  const cloudEvent = new CloudEvent({
    type: `${cloudEventTypePrefix}${event.type}`,
    source,
    subject,
    time: time.toISOString(),
    datacontenttype: 'application/json',
    data,
  });
  const message = HTTP.structured(cloudEvent);
  const contentType = String(message.headers['content-type'] ?? 'application/cloudevents+json; charset=utf-8');
  return {
    id: cloudEvent.id,
    type: cloudEvent.type,
    subject,
    repository: event.repository,
    tag: data.tag,
    kind: event.type === 'manifest.pushed' ? 'push' : 'delete',
    contentType,
    body: String(message.body),
  };
}

/** Whether a receiver asked for this payload: its events, repository globs and (for pushes) tag globs. */
export function wants(config: Pick<WebhookConfig, 'events' | 'repositories' | 'tags'>, payload: Payload): boolean {
  if (!config.events.includes(payload.kind)) return false;
  if (config.repositories.length > 0 && !config.repositories.some((glob) => glob.matches(payload.repository, null))) return false;
  if (config.tags !== undefined && payload.kind === 'push') return payload.tag !== undefined && config.tags.some((pattern) => pattern.test(payload.tag as string));
  return true;
}

/**
 * `sha256=` and the hex HMAC-SHA256, keyed by the shared secret, of `TIMESTAMP.BODY`: the timestamp
 * header's value (Unix seconds), a dot, and the raw body. Signed together, neither can be replaced.
 */
export function signature(secret: Buffer, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}
