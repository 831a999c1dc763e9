// Building blocks of the local PKI: RSA keys, certificate assembly, native signing, PEM files written whole.
import { constants, generateKeyPair, privateEncrypt, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { promisify } from 'node:util';
import type forge from 'node-forge';
import { CertificateError } from '../errors.js';
import { isMissing, writeFileAtomically } from '../config/files.js';
import { ipv6Groups } from '../ip-address.js';

export type RsaPublicKey = forge.pki.rsa.PublicKey;
type RsaPrivateKey = forge.pki.rsa.PrivateKey;

export interface KeyPair {
  privateKeyPem: string;
  publicKey: RsaPublicKey;
}

export const HOUR_MS = 60 * 60 * 1000;
export const DAY_MS = 24 * HOUR_MS;
export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;
export const DIR_MODE = 0o700;

const generateRsaKeyPair = promisify(generateKeyPair);

/**
 * node-forge (CommonJS), loaded synchronously at its first use: a serving gateway needs it only to make
 * missing certificates or the token key, and never to answer a request.
 */
let forgeModule: typeof forge | undefined;
export function nodeForge(): typeof forge {
  return (forgeModule ??= createRequire(import.meta.url)('node-forge') as typeof forge);
}

export interface CertificateSpec {
  subject: forge.pki.CertificateField[];
  issuer: forge.pki.CertificateField[];
  publicKey: RsaPublicKey;
  days: number;
  extensions: object[];
  /** Latest moment the certificate may be valid until (its issuer's own expiry). */
  notAfterLimit?: Date;
}

export function buildCertificate(spec: CertificateSpec): forge.pki.Certificate {
  const cert = nodeForge().pki.createCertificate();
  cert.publicKey = spec.publicKey;
  cert.serialNumber = randomSerialNumber();
  // Back-dated for clock skew; the lifetime counts from that moment so it never exceeds `days`.
  const notBefore = new Date(Date.now() - HOUR_MS);
  let notAfter = new Date(notBefore.getTime() + spec.days * DAY_MS);
  // A certificate outliving its CA would stop verifying on the CA's last day anyway.
  if (spec.notAfterLimit && notAfter > spec.notAfterLimit) notAfter = spec.notAfterLimit;
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(spec.subject);
  cert.setIssuer(spec.issuer);
  cert.setExtensions(spec.extensions);
  return cert;
}

/** 16 random bytes as a positive DER integer: high bit clear, and no zero first byte (illegal padding). */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

/** Node's native generator: forge's JavaScript fallback needs seconds for a 2048-bit key. */
export async function generateRsaKey(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateRsaKeyPair('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKey: nodeForge().pki.publicKeyFromPem(publicKey) };
}

/** DER prefix of PKCS#1 v1.5's DigestInfo for SHA-256; the 32-byte hash follows it. */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * Signs with sha256WithRSAEncryption. forge assembles the certificate and hashes it, but the RSA
 * operation is done natively: forge's JavaScript one costs tens of milliseconds per signature.
 */
export function signCertificate(cert: forge.pki.Certificate, privateKeyPem: string): void {
  const nativeSigner = {
    sign(digest: forge.md.MessageDigest): string {
      const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(digest.digest().getBytes(), 'binary')]);
      const signature = privateEncrypt({ key: privateKeyPem, padding: constants.RSA_PKCS1_PADDING }, digestInfo);
      return signature.toString('binary');
    },
  };
  // forge only calls sign(digest) on the key it is given.
  cert.sign(nativeSigner as unknown as RsaPrivateKey, nodeForge().md.sha256.create());
}

/** The address in network byte order, as forge's binary string. */
export function ipAddressBytes(address: string): string {
  if (net.isIPv4(address)) return String.fromCharCode(...address.split('.').map(Number));
  const groups = ipv6Groups(address);
  if (groups === undefined) throw new CertificateError(`${address} is not an IP address`, true);
  return String.fromCharCode(...groups.flatMap((group) => [group >> 8, group & 0xff]));
}

export function parseOrRefuse<T>(file: string, pem: string, parse: (pem: string) => T): T {
  try {
    return parse(pem);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CertificateError(`cannot read ${file} (an unencrypted RSA PEM file is needed): ${reason}`);
  }
}

export async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}

/** True when both files exist, false when neither does; one without the other is refused. */
export async function pairPresent(first: string, second: string, what: string): Promise<boolean> {
  const [hasFirst, hasSecond] = await Promise.all([fileExists(first), fileExists(second)]);
  if (hasFirst === hasSecond) return hasFirst;
  const [present, missing] = hasFirst ? [first, second] : [second, first];
  throw new CertificateError(
    `${present} exists but ${missing} does not: restore ${missing}, or remove ${present} to create ${what} anew`,
  );
}

/** Creates the folder (0700) or makes an existing one private: it may hold private keys. */
export async function makeDirectory(dir: string, options: { private?: boolean } = {}): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (error) {
    throw new CertificateError(`cannot create folder ${dir}: ${(error as Error).message}`);
  }
  // A folder someone else owns (a bind mount, say) keeps its mode; the key inside is 0600 regardless.
  if (options.private) await fs.chmod(dir, DIR_MODE).catch(() => undefined);
}

/** A reader never sees half a key or certificate; a failure names the file. */
export async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  try {
    await writeFileAtomically(file, content, mode);
  } catch (error) {
    throw new CertificateError(`cannot write ${file}: ${(error as Error).message}`);
  }
}
