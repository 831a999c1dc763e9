// The referrers tag schema as data: subject digests, fallback tag names, a pushed manifest's referrer descriptor, and the image index that lists them.

import { RegistryError } from '../errors.js';

export const ociIndexMediaType = 'application/vnd.oci.image.index.v1+json';
export const ociManifestMediaType = 'application/vnd.oci.image.manifest.v1+json';

/** The manifest types that carry a `subject` (OCI image spec 1.1); a Docker manifest has none. */
const subjectMediaTypes = new Set([ociManifestMediaType, ociIndexMediaType]);

/** Digests the gateway lists referrers of: the OCI image spec's registered algorithms, in their canonical form. */
const subjectDigestPattern = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** The largest referrers index the registry would take (its manifest limit). */
export const maxIndexBytes = 4 * 1024 * 1024;

/** A descriptor of one referrer, as the referrers API lists it. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** A fallback index as read: its top-level fields (kept when it is written back) and its entries, as stored. */
export interface ReferrersIndex {
  fields: Record<string, unknown>;
  entries: Record<string, unknown>[];
}

/** One change to a subject's list: a referrer pushed, or one deleted. */
export type IndexChange = { kind: 'add'; descriptor: ReferrerDescriptor } | { kind: 'remove'; digest: string };

export function isSubjectDigest(digest: string): boolean {
  return subjectDigestPattern.test(digest);
}

/**
 * The referrers tag of a digest: the algorithm truncated to 32 characters, "-", and the encoded part
 * truncated to 64, any character a tag may not hold replaced by "-" (`sha256:abc…` → `sha256-abc…`).
 */
export function fallbackTag(digest: string): string {
  const colon = digest.indexOf(':');
  const tag = `${digest.slice(0, colon).slice(0, 32)}-${digest.slice(colon + 1).slice(0, 64)}`;
  return tag.replace(/[^A-Za-z0-9_.-]/g, '-');
}

/** Go's encoding/json matches object keys to fields ignoring case, with ſ as s and the Kelvin sign as k. */
function goFold(key: string): string {
  return key.replace(/\u017f/g, 's').replace(/\u212a/g, 'k').toLowerCase();
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(message: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message);
}

/**
 * A field the gateway reads. Refused when the object also spells it another way: Go clients
 * (cosign, oras, notation) would read that spelling, the gateway the exact one.
 */
function field(object: Record<string, unknown>, name: string): unknown {
  const folded = goFold(name);
  const keys = Object.keys(object).filter((key) => goFold(key) === folded);
  if (keys.length > 1 || (keys.length === 1 && keys[0] !== name)) throw invalid(`the manifest spells its ${name} field ambiguously`);
  return object[name];
}

function stringAnnotations(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  const entries = Object.entries(value);
  return entries.every(([, text]) => typeof text === 'string') && entries.length > 0 ? (value as Record<string, string>) : undefined;
}

/** A referrer: the digest its `subject` names, and its descriptor (digest and size are the pushed body's). */
export interface PushedReferrer {
  subject: string;
  descriptor: Omit<ReferrerDescriptor, 'digest'>;
}

/**
 * The referrer a manifest PUT makes, or undefined when the body has no `subject` (or is no OCI
 * manifest or index, or no JSON: the registry answers for that). A `subject` that is not a
 * descriptor of a manifest the gateway can list throws MANIFEST_INVALID, before the registry stores it.
 */
export function referrerOf(body: Buffer, contentType: string | undefined): PushedReferrer | undefined {
  const mediaType = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (!subjectMediaTypes.has(mediaType)) return undefined;
  let manifest: unknown;
  try {
    manifest = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(manifest)) return undefined;
  const subject = field(manifest, 'subject');
  if (subject === undefined) return undefined;
  if (!isObject(subject)) throw invalid('subject must be a descriptor');
  const digest = field(subject, 'digest');
  const subjectType = field(subject, 'mediaType');
  const size = field(subject, 'size');
  if (typeof subjectType !== 'string' || subjectType === '') throw invalid('subject must have a mediaType');
  if (typeof digest !== 'string' || !isSubjectDigest(digest)) throw invalid('subject must have a sha256 or sha512 digest');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid('subject must have a size');

  let artifactType = field(manifest, 'artifactType');
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid('artifactType must be a string');
  if ((artifactType === undefined || artifactType === '') && mediaType === ociManifestMediaType) {
    const config = field(manifest, 'config');
    artifactType = isObject(config) ? field(config, 'mediaType') : undefined;
  }
  const annotations = stringAnnotations(field(manifest, 'annotations'));
  return {
    subject: digest,
    descriptor: {
      mediaType,
      size: body.length,
      ...(typeof artifactType === 'string' && artifactType !== '' ? { artifactType } : {}),
      ...(annotations ? { annotations } : {}),
    },
  };
}

/** The subject digest of a stored manifest, when it is a referrer (for deletes: the gateway reads it first). */
export function subjectOfStored(body: Buffer, contentType: string | undefined): string | undefined {
  try {
    return referrerOf(body, contentType)?.subject;
  } catch {
    // The registry stored it with a subject the gateway would not have listed: nothing to remove.
    return undefined;
  }
}

/** Reads a fallback tag's manifest; undefined when it is not an image index (the tag then belongs to someone else). */
export function parseIndex(body: Buffer, contentType: string | undefined): ReferrersIndex | undefined {
  if ((contentType ?? '').split(';', 1)[0]!.trim().toLowerCase() !== ociIndexMediaType) return undefined;
  let index: unknown;
  try {
    index = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(index) || index.schemaVersion !== 2) return undefined;
  const manifests = index.manifests ?? [];
  if (!Array.isArray(manifests)) return undefined;
  return { fields: index, entries: manifests.filter(isObject) };
}

export function emptyIndex(): ReferrersIndex {
  return { fields: {}, entries: [] };
}

/** An entry as the referrers API answers it, or undefined for one that is no usable descriptor. */
export function descriptorOf(entry: Record<string, unknown>): ReferrerDescriptor | undefined {
  const { mediaType, digest, size, artifactType, annotations } = entry;
  if (typeof mediaType !== 'string' || typeof digest !== 'string' || !isSubjectDigest(digest)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  const texts = stringAnnotations(annotations);
  return {
    mediaType,
    digest,
    size,
    ...(typeof artifactType === 'string' && artifactType !== '' ? { artifactType } : {}),
    ...(texts ? { annotations: texts } : {}),
  };
}

/** The referrers API's answer: every usable entry, only those of `artifactType` when given. */
export function listing(index: ReferrersIndex, artifactType: string | undefined): Buffer {
  const descriptors = index.entries.map(descriptorOf).filter((d): d is ReferrerDescriptor => d !== undefined);
  const manifests = artifactType === undefined ? descriptors : descriptors.filter((d) => d.artifactType === artifactType);
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociIndexMediaType, manifests }));
}

/** A descriptor as comparable text: its fields in one order, annotations sorted by name. */
function canonical(descriptor: ReferrerDescriptor): string {
  const annotations = descriptor.annotations ? Object.entries(descriptor.annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : [];
  return JSON.stringify([descriptor.mediaType, descriptor.digest, descriptor.size, descriptor.artifactType ?? null, annotations]);
}

function sameDescriptor(entry: Record<string, unknown>, descriptor: ReferrerDescriptor): boolean {
  const read = descriptorOf(entry);
  return read !== undefined && canonical(read) === canonical(descriptor);
}

/** Whether the list already says what `change` says: the referrer listed exactly so, or gone. */
export function isReflected(index: ReferrersIndex, change: IndexChange): boolean {
  if (change.kind === 'remove') return !index.entries.some((entry) => entry.digest === change.digest);
  const listed = index.entries.filter((entry) => entry.digest === change.descriptor.digest);
  return listed.length === 1 && sameDescriptor(listed[0]!, change.descriptor);
}

/** The index with `change` made (entries of that digest replaced, one entry per referrer); other entries are kept as stored. */
export function applyChange(index: ReferrersIndex, change: IndexChange): ReferrersIndex {
  const digest = change.kind === 'add' ? change.descriptor.digest : change.digest;
  const entries = index.entries.filter((entry) => entry.digest !== digest);
  if (change.kind === 'add') entries.push({ ...change.descriptor });
  return { fields: index.fields, entries };
}

/** The index without the entries of `digests` (manifests the registry no longer has). */
export function withoutDigests(index: ReferrersIndex, digests: ReadonlySet<string>): ReferrersIndex {
  return { fields: index.fields, entries: index.entries.filter((entry) => typeof entry.digest !== 'string' || !digests.has(entry.digest)) };
}

/** The bytes written to the fallback tag: the index's own fields kept, schemaVersion, mediaType and manifests set. */
export function serializeIndex(index: ReferrersIndex): Buffer {
  return Buffer.from(JSON.stringify({ ...index.fields, schemaVersion: 2, mediaType: ociIndexMediaType, manifests: index.entries }));
}
