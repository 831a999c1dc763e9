// The gateway's TLS server certificate (signed by the local CA) and the token signing key, written as PEM files.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type forge from 'node-forge';
import { checkHostsPermitted, createAuthority, defaultCaDir, loadAuthority, relocateLegacyCaKey, type Authority } from './ca.js';
import { CertificateError } from '../errors.js';
import {
  buildCertificate,
  CERT_MODE,
  fileExists,
  generateRsaKey,
  ipAddressBytes,
  KEY_MODE,
  makeDirectory,
  nodeForge,
  pairPresent,
  signCertificate,
  writeFileAtomic,
  type KeyPair,
} from './x509.js';

export interface CertificateOptions {
  /** Output folder for what the gateway reads (and ca.crt, which clients copy), created if missing. */
  dir: string;
  /** Folder of the CA key, never read by the gateway; default `ca/` beside `dir`. */
  caDir?: string;
  /** Subject alternative names: IP addresses (v4 or v6) or DNS names. */
  hosts: string[];
  /** Overwrite an existing server.crt/server.key (the CA is always reused if present). */
  force?: boolean;
  /** Server certificate lifetime in days, default 825 (never past the CA's own expiry). */
  validDays?: number;
}

export interface CertificatePaths {
  dir: string;
  caDir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  tokenKey: string;
  tokenCert: string;
}

export interface CertificateFiles extends CertificatePaths {
  createdCa: boolean;
  createdServer: boolean;
  createdToken: boolean;
  /** Where the CA key was before it was moved out of `dir`, when it was. */
  movedCaKeyFrom: string | undefined;
}

/** 825 days is the longest server certificate lifetime Apple platforms accept. */
const DEFAULT_SERVER_DAYS = 825;
const TOKEN_SIGNER_DAYS = 3650;
const TOKEN_SIGNER_NAME = 'registry-gateway token signer';
/** Common name of a certificate for IP addresses only: not name-like, so no client reads it as a DNS name. */
const ADDRESS_ONLY_NAME = 'registry-gateway';

/** Names a fresh certificate should cover when the user gives none. */
export function defaultHosts(): string[] {
  const hosts = ['localhost', '127.0.0.1', '::1'];
  const hostname = os.hostname().toLowerCase();
  // A hostname that is not a valid DNS name (an underscore, say) cannot go in a certificate.
  if (isDnsName(hostname)) hosts.push(hostname);
  return [...new Set(hosts)];
}

/** Returns the host lowercased (IPv6 in its canonical short form), or throws a CertificateError naming it. */
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
  throw new CertificateError(
    `invalid host ${JSON.stringify(host)}: expected a DNS name (registry.example.com, *.example.com) ` +
      'or an IP address, without scheme, port or path', true);
}

/** Where `gateway certs` keeps each file for a certificate folder and a CA folder. */
export function certificatePaths(dir: string, caDir?: string): CertificatePaths {
  const root = path.resolve(dir);
  const ca = path.resolve(caDir ?? defaultCaDir(root));
  const file = (name: string) => path.join(root, name);
  return {
    dir: root,
    caDir: ca,
    caCert: file('ca.crt'),
    caKey: path.join(ca, 'ca.key'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    tokenKey: file('token.key'),
    tokenCert: file('token.crt'),
  };
}

/**
 * Creates (or reuses) the local CA, then a server certificate for `hosts` signed by it, and the token
 * signing key. Refuses to replace an existing server certificate unless `force` is set, and hosts a
 * reused CA may not sign for.
 */
export async function createCertificates(options: CertificateOptions): Promise<CertificateFiles> {
  const hosts = normaliseHosts(options.hosts);
  const validDays = checkValidDays(options.validDays ?? DEFAULT_SERVER_DAYS);
  const paths = certificatePaths(options.dir, options.caDir);
  if (paths.caDir === paths.dir) {
    throw new CertificateError(`the CA folder must not be the certificate folder ${paths.dir}: the gateway reads that folder and never needs the CA key`, true);
  }

  if (!options.force) await refuseOverwrite([paths.serverCert, paths.serverKey]);
  const movedCaKeyFrom = await relocateLegacyCaKey(paths.dir, paths.caKey);
  const caPresent = await pairPresent(paths.caCert, paths.caKey, 'the CA');
  await pairPresent(paths.tokenKey, paths.tokenCert, 'the token signing key');

  // An unusable CA, or one that may not sign for these hosts, is refused before any new file is written.
  const existingAuthority = caPresent ? await loadAuthority(paths) : undefined;
  if (existingAuthority) checkHostsPermitted(existingAuthority, hosts, paths);
  await makeDirectory(paths.dir);
  // Key generation runs on the thread pool, so the keys are made side by side.
  const [authority, serverKeys, token] = await Promise.all([
    existingAuthority ?? createAuthority(paths, hosts),
    generateRsaKey(),
    ensureTokenSigningKey(paths.tokenKey, paths.tokenCert),
  ]);
  await writeServerCertificate(authority, serverKeys, hosts, validDays, paths);

  return { ...paths, createdCa: !caPresent, createdServer: true, createdToken: token.created, movedCaKeyFrom };
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
    days: TOKEN_SIGNER_DAYS,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  signCertificate(certificate, keys.privateKeyPem);
  await writeFileAtomic(key, keys.privateKeyPem, KEY_MODE);
  await writeFileAtomic(cert, nodeForge().pki.certificateToPem(certificate), CERT_MODE);
  return { created: true };
}

function normaliseHosts(hosts: string[]): string[] {
  const normalised = [...new Set(hosts.map(validateHost))];
  if (normalised.length === 0) throw new CertificateError('at least one host name or IP address is needed', true);
  return normalised;
}

function checkValidDays(days: number): number {
  if (!Number.isInteger(days) || days < 1) {
    throw new CertificateError(`certificate lifetime must be a whole number of days above 0, got ${days}`, true);
  }
  return days;
}

async function refuseOverwrite(files: string[]): Promise<void> {
  for (const file of files) {
    if (await fileExists(file)) {
      throw new CertificateError(
        `${file} already exists: \`gateway certs show\` prints its names, expiry and how clients trust it; ` +
          'pass --force to replace the server certificate (the CA is kept)',
      );
    }
  }
}

async function writeServerCertificate(
  authority: Authority,
  keys: KeyPair,
  hosts: string[],
  validDays: number,
  paths: { serverCert: string; serverKey: string },
): Promise<void> {
  const commonName = hosts.find((host) => !net.isIP(host)) ?? ADDRESS_ONLY_NAME;
  const cert = buildCertificate({
    subject: [{ name: 'commonName', value: commonName }],
    issuer: authority.cert.subject.attributes,
    publicKey: keys.publicKey,
    days: validDays,
    notAfterLimit: authority.cert.validity.notAfter,
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
  await writeFileAtomic(paths.serverCert, nodeForge().pki.certificateToPem(cert), CERT_MODE);
}

/** The CA's own key identifier when it has one, so chain builders can match issuer and subject. */
function authorityKeyId(caCert: forge.pki.Certificate): string {
  const extension = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (extension?.subjectKeyIdentifier) return nodeForge().util.hexToBytes(extension.subjectKeyIdentifier);
  return caCert.generateSubjectKeyIdentifier().getBytes();
}

/** GeneralName type 7 (iPAddress) for addresses, type 2 (dNSName) for names. */
function subjectAltName(host: string): { type: number; value: string } {
  if (net.isIP(host)) return { type: 7, value: ipAddressBytes(host) };
  return { type: 2, value: host };
}

function isPlainIPv6(text: string): boolean {
  // A zone index (fe80::1%eth0) only means something on one machine and has no place in a certificate.
  return net.isIPv6(text) && !text.includes('%');
}

function canonicalIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
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
