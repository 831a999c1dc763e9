// Local CA, the gateway's TLS server certificate and the token signing key, written as PEM files.
import { constants, generateKeyPair, privateEncrypt, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CliError } from './errors.js';
import { isMissing, writeFileAtomically } from './files.js';
import { ipv6Groups } from './ip-address.js';

export interface CertificateOptions {
  /** Output folder, created if missing. */
  dir: string;
  /** Subject alternative names: IP addresses (v4 or v6) or DNS names. */
  hosts: string[];
  /** Overwrite an existing server.crt/server.key (the CA is always reused if present). */
  force?: boolean;
  /** Server certificate lifetime in days, default 825. */
  validDays?: number;
}

export interface CertificateFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  tokenKey: string;
  tokenCert: string;
  createdCa: boolean;
  createdServer: boolean;
  createdToken: boolean;
}

type RsaPrivateKey = forge.pki.rsa.PrivateKey;
type RsaPublicKey = forge.pki.rsa.PublicKey;

interface KeyPair {
  privateKeyPem: string;
  publicKey: RsaPublicKey;
}

interface Authority {
  cert: forge.pki.Certificate;
  privateKeyPem: string;
}

/** 825 days is the longest server certificate lifetime Apple platforms accept. */
const DEFAULT_SERVER_DAYS = 825;
const LONG_LIVED_DAYS = 3650;
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;
const DIR_MODE = 0o700;
const TOKEN_SIGNER_NAME = 'registry-gateway token signer';

const generateRsaKeyPair = promisify(generateKeyPair);

/** Names a fresh certificate should cover when the user gives none. */
export function defaultHosts(): string[] {
  const hosts = ['localhost', '127.0.0.1', '::1'];
  const hostname = os.hostname().toLowerCase();
  // A hostname that is not a valid DNS name (an underscore, say) cannot go in a certificate.
  if (isDnsName(hostname)) hosts.push(hostname);
  return [...new Set(hosts)];
}

/** Returns the host lowercased (IPv6 in its canonical short form), or throws a CliError naming it. */
export function validateHost(host: string): string {
  const candidate = host.trim().toLowerCase();
  const bracketed = /^\[(.*)\]$/.exec(candidate)?.[1];
  if (bracketed !== undefined) {
    if (isPlainIPv6(bracketed)) return canonicalIPv6(bracketed);
  } else if (net.isIPv4(candidate)) {
    return candidate;
  } else if (isPlainIPv6(candidate)) {
    return canonicalIPv6(candidate);
  } else if (isDnsName(candidate)) {
    return candidate;
  }
  throw new CliError(
    `invalid host ${JSON.stringify(host)}: expected a DNS name (registry.example.com, *.example.com) ` +
      'or an IP address, without scheme, port or path',
    2,
  );
}

/**
 * Creates (or reuses) the local CA, then a server certificate for `hosts` signed by it, and the token
 * signing key. Refuses to replace an existing server certificate unless `force` is set.
 */
export async function createCertificates(options: CertificateOptions): Promise<CertificateFiles> {
  const hosts = normaliseHosts(options.hosts);
  const validDays = checkValidDays(options.validDays ?? DEFAULT_SERVER_DAYS);
  const paths = certificatePaths(options.dir);

  const caPresent = await pairPresent(paths.caCert, paths.caKey, 'the CA');
  if (!options.force) await refuseOverwrite([paths.serverCert, paths.serverKey]);
  await pairPresent(paths.tokenKey, paths.tokenCert, 'the token signing key');
  await makeDirectory(paths.dir);

  // An unusable CA is refused before any new file is written.
  const existingAuthority = caPresent ? await loadAuthority(paths.caCert, paths.caKey) : undefined;
  // Key generation runs on the thread pool, so the keys are made side by side.
  const [authority, serverKeys, token] = await Promise.all([
    existingAuthority ?? createAuthority(paths),
    generateRsaKey(),
    ensureTokenSigningKey(paths.tokenKey, paths.tokenCert),
  ]);
  await writeServerCertificate(authority, serverKeys, hosts, validDays, paths);

  return { ...paths, createdCa: !caPresent, createdServer: true, createdToken: token.created };
}

/**
 * Makes sure a token signing key and its self-signed certificate exist at the given paths. The
 * certificate is what the registry's `auth.token.rootcertbundle` trusts and what goes in a token's x5c.
 */
export async function ensureTokenSigningKey(keyPath: string, certPath: string): Promise<{ created: boolean }> {
  const key = path.resolve(keyPath);
  const cert = path.resolve(certPath);
  if (await pairPresent(key, cert, 'the token signing key')) return { created: false };

  await makeDirectory(path.dirname(key));
  await makeDirectory(path.dirname(cert));
  const keys = await generateRsaKey();
  const subject = [{ name: 'commonName', value: TOKEN_SIGNER_NAME }];
  const certificate = buildCertificate({
    subject,
    issuer: subject,
    publicKey: keys.publicKey,
    days: LONG_LIVED_DAYS,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  signCertificate(certificate, keys.privateKeyPem);
  await writeFileAtomic(key, keys.privateKeyPem, KEY_MODE);
  await writeFileAtomic(cert, forge.pki.certificateToPem(certificate), CERT_MODE);
  return { created: true };
}

/** Tells a user how to make docker, podman/skopeo and the system trust the CA for `hostPort`. */
export function trustInstructions(files: CertificateFiles, hostPort: string): string {
  const ca = shellQuote(files.caCert);
  const dockerDir = shellQuote(`/etc/docker/certs.d/${hostPort}`);
  const containersDir = shellQuote(`/etc/containers/certs.d/${hostPort}`);
  return [
    `Trust the local CA ${ca} on every client of ${hostPort}:`,
    '',
    '  Docker:',
    `    sudo mkdir -p ${dockerDir} && sudo cp ${ca} ${dockerDir}/ca.crt`,
    '  Podman, Skopeo, Buildah:',
    `    sudo mkdir -p ${containersDir} && sudo cp ${ca} ${containersDir}/ca.crt`,
    '    or copy ca.crt alone into a folder and pass that folder with --cert-dir',
    '    (not the certificate folder itself: its .key files would be read as client certificates)',
    '  System store on Debian/Ubuntu (curl, git, ...):',
    `    sudo cp ${ca} /usr/local/share/ca-certificates/registry-gateway-ca.crt && sudo update-ca-certificates`,
    '',
    `If the registry should verify tokens itself, set its auth.token.rootcertbundle to ${shellQuote(files.tokenCert)}.`,
  ].join('\n');
}

function certificatePaths(dir: string): Omit<CertificateFiles, 'createdCa' | 'createdServer' | 'createdToken'> {
  const root = path.resolve(dir);
  const file = (name: string) => path.join(root, name);
  return {
    dir: root,
    caCert: file('ca.crt'),
    caKey: file('ca.key'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    tokenKey: file('token.key'),
    tokenCert: file('token.crt'),
  };
}

function normaliseHosts(hosts: string[]): string[] {
  const normalised = [...new Set(hosts.map(validateHost))];
  if (normalised.length === 0) throw new CliError('at least one host name or IP address is needed', 2);
  return normalised;
}

function checkValidDays(days: number): number {
  if (!Number.isInteger(days) || days < 1) {
    throw new CliError(`certificate lifetime must be a whole number of days above 0, got ${days}`, 2);
  }
  return days;
}

/** True when both files exist, false when neither does; one without the other is refused. */
async function pairPresent(first: string, second: string, what: string): Promise<boolean> {
  const [hasFirst, hasSecond] = await Promise.all([fileExists(first), fileExists(second)]);
  if (hasFirst === hasSecond) return hasFirst;
  const [present, missing] = hasFirst ? [first, second] : [second, first];
  throw new CliError(
    `${present} exists but ${missing} does not: restore ${missing}, or remove ${present} to create ${what} anew`,
  );
}

async function refuseOverwrite(files: string[]): Promise<void> {
  for (const file of files) {
    if (await fileExists(file)) {
      throw new CliError(`${file} already exists; pass --force to replace the server certificate (the CA is kept)`);
    }
  }
}

async function createAuthority(paths: { caCert: string; caKey: string }): Promise<Authority> {
  const keys = await generateRsaKey();
  // The hostname tells apart the CAs of two machines once both are trusted somewhere.
  const subject = [{ name: 'commonName', value: `registry-gateway local CA (${os.hostname()})` }];
  const cert = buildCertificate({
    subject,
    issuer: subject,
    publicKey: keys.publicKey,
    days: LONG_LIVED_DAYS,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  signCertificate(cert, keys.privateKeyPem);
  await writeFileAtomic(paths.caKey, keys.privateKeyPem, KEY_MODE);
  await writeFileAtomic(paths.caCert, forge.pki.certificateToPem(cert), CERT_MODE);
  return { cert, privateKeyPem: keys.privateKeyPem };
}

async function loadAuthority(certPath: string, keyPath: string): Promise<Authority> {
  const cert = parseOrRefuse(certPath, await fs.readFile(certPath, 'utf8'), (pem) =>
    forge.pki.certificateFromPem(pem),
  );
  const privateKeyPem = await fs.readFile(keyPath, 'utf8');
  const key = parseOrRefuse(keyPath, privateKeyPem, (pem) => forge.pki.privateKeyFromPem(pem));
  const certKey = cert.publicKey as RsaPublicKey;
  if (!certKey.n.equals(key.n) || !certKey.e.equals(key.e)) {
    throw new CliError(`${keyPath} is not the private key of ${certPath}`);
  }
  const constraints = cert.getExtension('basicConstraints') as { cA?: boolean } | undefined;
  if (!constraints?.cA) throw new CliError(`${certPath} is not a CA certificate (basicConstraints cA is not set)`);
  if (cert.validity.notAfter.getTime() <= Date.now()) {
    throw new CliError(
      `${certPath} expired on ${cert.validity.notAfter.toISOString()}; remove ca.crt and ca.key to create a new CA`,
    );
  }
  return { cert, privateKeyPem };
}

function parseOrRefuse<T>(file: string, pem: string, parse: (pem: string) => T): T {
  try {
    return parse(pem);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(`cannot read ${file} (an unencrypted RSA PEM file is needed): ${reason}`);
  }
}

async function writeServerCertificate(
  authority: Authority,
  keys: KeyPair,
  hosts: string[],
  validDays: number,
  paths: { serverCert: string; serverKey: string },
): Promise<void> {
  const cert = buildCertificate({
    subject: [{ name: 'commonName', value: hosts[0] }],
    issuer: authority.cert.subject.attributes,
    publicKey: keys.publicKey,
    days: validDays,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: hosts.map(subjectAltName) },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId(authority.cert) },
    ],
  });
  signCertificate(cert, authority.privateKeyPem);
  await writeFileAtomic(paths.serverKey, keys.privateKeyPem, KEY_MODE);
  await writeFileAtomic(paths.serverCert, forge.pki.certificateToPem(cert), CERT_MODE);
}

/** The CA's own key identifier when it has one, so chain builders can match issuer and subject. */
function authorityKeyId(caCert: forge.pki.Certificate): string {
  const extension = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (extension?.subjectKeyIdentifier) return forge.util.hexToBytes(extension.subjectKeyIdentifier);
  return caCert.generateSubjectKeyIdentifier().getBytes();
}

/** GeneralName type 7 (iPAddress) for addresses, type 2 (dNSName) for names. */
function subjectAltName(host: string): { type: number; value: string } {
  if (net.isIP(host)) return { type: 7, value: ipAddressBytes(host) };
  return { type: 2, value: host };
}

interface CertificateSpec {
  subject: forge.pki.CertificateField[];
  issuer: forge.pki.CertificateField[];
  publicKey: RsaPublicKey;
  days: number;
  extensions: object[];
}

function buildCertificate(spec: CertificateSpec): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = spec.publicKey;
  cert.serialNumber = randomSerialNumber();
  // Back-dated for clock skew; the lifetime counts from that moment so it never exceeds `days`.
  const notBefore = new Date(Date.now() - HOUR_MS);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = new Date(notBefore.getTime() + spec.days * DAY_MS);
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
async function generateRsaKey(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateRsaKeyPair('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) };
}

/** DER prefix of PKCS#1 v1.5's DigestInfo for SHA-256; the 32-byte hash follows it. */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * Signs with sha256WithRSAEncryption. forge assembles the certificate and hashes it, but the RSA
 * operation is done natively: forge's JavaScript one costs tens of milliseconds per signature.
 */
function signCertificate(cert: forge.pki.Certificate, privateKeyPem: string): void {
  const nativeSigner = {
    sign(digest: forge.md.MessageDigest): string {
      const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(digest.digest().getBytes(), 'binary')]);
      const signature = privateEncrypt({ key: privateKeyPem, padding: constants.RSA_PKCS1_PADDING }, digestInfo);
      return signature.toString('binary');
    },
  };
  // forge only calls sign(digest) on the key it is given.
  cert.sign(nativeSigner as unknown as RsaPrivateKey, forge.md.sha256.create());
}

function isPlainIPv6(text: string): boolean {
  // A zone index (fe80::1%eth0) only means something on one machine and has no place in a certificate.
  return net.isIPv6(text) && !text.includes('%');
}

function canonicalIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** The address in network byte order, as forge's binary string. */
function ipAddressBytes(address: string): string {
  if (net.isIPv4(address)) return String.fromCharCode(...address.split('.').map(Number));
  const groups = ipv6Groups(address);
  if (groups === undefined) throw new CliError(`${address} is not an IP address`, 2);
  return String.fromCharCode(...groups.flatMap((group) => [group >> 8, group & 0xff]));
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  if (labels[0] === '*') labels.shift();
  const last = labels.at(-1);
  // An all-numeric last label is a mistyped IP address rather than a name.
  if (last === undefined || /^\d+$/.test(last)) return false;
  return labels.every((label) => DNS_LABEL.test(label));
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}

async function makeDirectory(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (error) {
    throw new CliError(`cannot create folder ${dir}: ${(error as Error).message}`);
  }
}

/** A reader never sees half a key or certificate; a failure names the file. */
async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  try {
    await writeFileAtomically(file, content, mode);
  } catch (error) {
    throw new CliError(`cannot write ${file}: ${(error as Error).message}`);
  }
}
