// The ACME files under certs/acme/: account key and URL, the issued certificate and its key; read only when whole and valid, written atomically.

import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMissing, writeFileAtomically } from '../../config/files.js';

export interface AcmePaths {
  dir: string;
  accountKey: string;
  account: string;
  cert: string;
  key: string;
}

/** certs/acme/ beside the server certificate: the ACME files of every gateway sharing certs/. */
export function acmePaths(certDir: string): AcmePaths {
  const dir = path.join(certDir, 'acme');
  return {
    dir,
    accountKey: path.join(dir, 'account.key'),
    account: path.join(dir, 'account.json'),
    cert: path.join(dir, 'certificate.crt'),
    key: path.join(dir, 'certificate.key'),
  };
}

export interface StoredCertificate {
  certPem: string;
  keyPem: string;
  names: string[];
  notBefore: Date;
  notAfter: Date;
  issuer: string;
  /** SHA-256 of the leaf certificate, to tell whether a certificate on disk is the one being served. */
  fingerprint: string;
}

/** What is on disk: nothing, a certificate fit to serve, or one that is not (and why). */
export type DiskCertificate = { kind: 'missing' } | { kind: 'ok'; certificate: StoredCertificate } | { kind: 'unusable'; reason: string };

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/**
 * Checks a certificate and key pair: it parses, the key is the certificate's, it names every
 * domain, and it has not expired. Anything else is never served.
 */
export function checkCertificate(certPem: string, keyPem: string, domains: readonly string[], now: number): StoredCertificate | string {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (error) {
    return `the certificate does not parse (${(error as Error).message})`;
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return 'the key does not belong to the certificate';
  } catch (error) {
    return `the key does not parse (${(error as Error).message})`;
  }
  const missing = domains.filter((domain) => leaf.checkHost(domain, { wildcards: false }) === undefined);
  if (missing.length > 0) return `the certificate does not name ${missing.join(', ')}`;
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) return `the certificate expired on ${notAfter.toISOString()}`;
  return {
    certPem,
    keyPem,
    names: (leaf.subjectAltName ?? '')
      .split(', ')
      .filter((name) => name.startsWith('DNS:'))
      .map((name) => name.slice(4)),
    notBefore: new Date(leaf.validFrom),
    notAfter,
    issuer: leaf.issuer.replaceAll('\n', ', '),
    fingerprint: createHash('sha256').update(leaf.raw).digest('hex'),
  };
}

export async function readCertificate(paths: AcmePaths, domains: readonly string[], now: number): Promise<DiskCertificate> {
  let certPem: string | undefined;
  let keyPem: string | undefined;
  try {
    [certPem, keyPem] = await Promise.all([readOptional(paths.cert), readOptional(paths.key)]);
  } catch (error) {
    return { kind: 'unusable', reason: `cannot read it: ${(error as Error).message}` };
  }
  if (certPem === undefined && keyPem === undefined) return { kind: 'missing' };
  if (certPem === undefined || keyPem === undefined) return { kind: 'unusable', reason: `only one of ${paths.cert} and ${paths.key} exists` };
  const checked = checkCertificate(certPem, keyPem, domains, now);
  return typeof checked === 'string' ? { kind: 'unusable', reason: checked } : { kind: 'ok', certificate: checked };
}

/** The key first, then the certificate: a reader between the two sees a mismatch and ignores the pair. */
export async function writeCertificate(paths: AcmePaths, certPem: string, keyPem: string): Promise<void> {
  await writeFileAtomically(paths.key, keyPem, 0o600);
  await writeFileAtomically(paths.cert, certPem, 0o644);
}

export interface AcmeAccount {
  keyPem: string;
  /** The account URL at `directory`, once registered there. */
  url?: string;
}

interface AccountRecord {
  directory: string;
  url: string;
}

/** The account key (made by the caller when missing) and its URL, if it was registered at this directory. */
export async function readAccount(paths: AcmePaths, directory: string): Promise<AcmeAccount | undefined> {
  const keyPem = await readOptional(paths.accountKey);
  if (keyPem === undefined) return undefined;
  const recordText = await readOptional(paths.account);
  let url: string | undefined;
  try {
    const record = recordText === undefined ? undefined : (JSON.parse(recordText) as Partial<AccountRecord>);
    if (record?.directory === directory && typeof record.url === 'string') url = record.url;
  } catch {
    // An unreadable record only costs a new registration, which finds the same account by its key.
  }
  return { keyPem, url };
}

export async function writeAccountKey(paths: AcmePaths, keyPem: string): Promise<void> {
  await writeFileAtomically(paths.accountKey, keyPem, 0o600);
}

export async function writeAccountUrl(paths: AcmePaths, directory: string, url: string): Promise<void> {
  const record: AccountRecord = { directory, url };
  await writeFileAtomically(paths.account, `${JSON.stringify(record, null, 2)}\n`, 0o644);
}
