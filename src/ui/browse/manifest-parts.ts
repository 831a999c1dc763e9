// Reads the parts of a manifest and an image config the pages show: descriptors, platforms, layers, and the config's run settings, labels and history.

import type { ImageConfigView, LayerRow } from './model.js';
import { ReadProblem } from './upstream-reads.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
  artifactType?: string;
}

export interface ParsedManifest {
  digest: string;
  /** The manifest's own mediaType field, else the type the registry served it as. */
  mediaType: string;
  body: Buffer;
  kind: 'image' | 'index' | 'other';
  config?: Descriptor;
  layers: Descriptor[];
  /** An index's entries. */
  manifests: Descriptor[];
}

const indexTypes = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
/** Config types of runnable images: only these are read for created time, platform and run settings. */
const imageConfigTypes = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

function texts(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  const entries = Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string');
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

function textList(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined;
}

/** A descriptor as the manifest gives it, or undefined when it lacks a digest, a size or a media type. */
function descriptorOf(value: unknown): Descriptor | undefined {
  if (!isObject(value)) return undefined;
  const { mediaType, digest, size, platform, annotations, artifactType } = value;
  if (typeof digest !== 'string' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  const descriptor: Descriptor = { mediaType: typeof mediaType === 'string' ? mediaType : '', digest, size };
  if (isObject(platform)) descriptor.platform = { os: text(platform.os), architecture: text(platform.architecture), variant: text(platform.variant) };
  const notes = texts(annotations);
  if (notes) descriptor.annotations = notes;
  if (typeof artifactType === 'string' && artifactType !== '') descriptor.artifactType = artifactType;
  return descriptor;
}

export function parseManifest(digest: string, body: Buffer, servedAs: string): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ReadProblem('The manifest is not JSON; it is not shown.');
  }
  if (!isObject(json)) throw new ReadProblem('The manifest is not a JSON object; it is not shown.');
  const mediaType = typeof json.mediaType === 'string' && json.mediaType !== '' ? json.mediaType : servedAs;
  const manifests = Array.isArray(json.manifests) ? json.manifests.map(descriptorOf).filter((d): d is Descriptor => d !== undefined) : [];
  const layers = Array.isArray(json.layers) ? json.layers.map(descriptorOf).filter((d): d is Descriptor => d !== undefined) : [];
  const config = descriptorOf(json.config);
  const kind = indexTypes.has(mediaType) || (Array.isArray(json.manifests) && json.config === undefined) ? 'index' : config !== undefined ? 'image' : 'other';
  return { digest, mediaType, body, kind, ...(config ? { config } : {}), layers, manifests };
}

/** os/architecture[/variant], or "unknown" when neither is said. */
export function platformText(platform: { os?: string; architecture?: string; variant?: string } | undefined): string {
  const os = platform?.os;
  const architecture = platform?.architecture;
  if (!os && !architecture) return 'unknown';
  return [os || 'unknown', architecture || 'unknown', ...(platform?.variant ? [platform.variant] : [])].join('/');
}

/**
 * Index entries that are no platform of the image: build attestations (BuildKit marks them with
 * vnd.docker.reference.type) and entries for the unknown/unknown platform.
 */
export function isPlatformEntry(entry: Descriptor): boolean {
  if (entry.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') return false;
  return !(entry.platform?.os === 'unknown' && entry.platform?.architecture === 'unknown');
}

export function layerRows(manifest: ParsedManifest): LayerRow[] {
  return manifest.layers.map((layer) => ({ digest: layer.digest, mediaType: layer.mediaType, size: layer.size }));
}

/** Sum of the layers' sizes; undefined for anything but an image. */
export function layersSize(manifest: ParsedManifest): number | undefined {
  return manifest.kind === 'image' ? manifest.layers.reduce((sum, layer) => sum + layer.size, 0) : undefined;
}

/** Whether the manifest's config is an image config worth reading. */
export function hasImageConfig(manifest: ParsedManifest): boolean {
  return manifest.kind === 'image' && manifest.config !== undefined && imageConfigTypes.has(manifest.config.mediaType);
}

/** What the pages show of an image config; fields of the wrong type are left out, never guessed. */
export function configView(json: unknown): ImageConfigView {
  if (!isObject(json)) throw new ReadProblem('The image configuration is not a JSON object; it is not shown.');
  const run = isObject(json.config) ? json.config : {};
  const view: ImageConfigView = {};
  const set = <K extends keyof ImageConfigView>(key: K, value: ImageConfigView[K] | undefined) => {
    if (value !== undefined) view[key] = value;
  };
  set('os', text(json.os));
  set('architecture', text(json.architecture));
  set('variant', text(json.variant));
  const created = text(json.created);
  set('created', created === undefined ? undefined : (isoTime(created) ?? created));
  set('entrypoint', textList(run.Entrypoint));
  set('cmd', textList(run.Cmd));
  set('env', textList(run.Env));
  set('workingDir', text(run.WorkingDir) || undefined);
  set('user', text(run.User) || undefined);
  set('labels', texts(run.Labels));
  if (Array.isArray(json.history)) {
    view.history = json.history.filter(isObject).map((entry) => ({
      ...(text(entry.created) !== undefined ? { created: text(entry.created) } : {}),
      ...(text(entry.created_by) !== undefined ? { createdBy: text(entry.created_by) } : {}),
      ...(text(entry.comment) !== undefined ? { comment: text(entry.comment) } : {}),
      ...(entry.empty_layer === true ? { emptyLayer: true } : {}),
    }));
  }
  return view;
}

/** An RFC 3339 time (nanoseconds and all) as an ISO time, or undefined when it is none. */
export function isoTime(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 64) return undefined;
  const time = Date.parse(value);
  return Number.isFinite(time) ? new Date(time).toISOString() : undefined;
}

/** The manifest as indented JSON (its own bytes when they are not JSON, which parseManifest has refused already). */
export function prettyJson(body: Buffer): string {
  return JSON.stringify(JSON.parse(body.toString('utf8')), null, 2);
}
