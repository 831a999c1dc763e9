// The local CA: five years, limited by name constraints to the hosts it was made for, its key kept out of the certificate folder.
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type forge from 'node-forge';
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
  parseOrRefuse,
  signCertificate,
  writeFileAtomic,
  type RsaPublicKey,
} from './x509.js';

/** Long enough to outlive a few server certificates, short enough that a forgotten CA dies on its own. */
export const CA_DAYS = 5 * 365;

const NAME_CONSTRAINTS_OID = '2.5.29.30';
/** RFC 6761 reserves `.invalid`: it never resolves, so permitting it permits no real name. */
const NO_DNS_NAME = 'invalid';

export interface CaPaths {
  /** Where clients copy it from, beside the server certificate. */
  caCert: string;
  /** Read only by `gateway certs`, never by a running gateway. */
  caKey: string;
}

export interface Authority {
  cert: forge.pki.Certificate;
  privateKeyPem: string;
}

/** What the CA may sign: DNS names (and their subdomains) and single IP addresses; undefined when unlimited. */
export interface NameLimits {
  dnsNames: string[];
  ipAddresses: string[];
}

/** The CA folder when none is given: `ca/` beside the certificate folder, which is what the gateway reads. */
export function defaultCaDir(certDir: string): string {
  return path.join(path.dirname(path.resolve(certDir)), 'ca');
}

/** The CA key's place in a certificate folder, where versions before the CA folder existed wrote it. */
export function legacyCaKeyPath(certDir: string): string {
  return path.join(path.resolve(certDir), 'ca.key');
}

/**
 * Moves a CA key out of the certificate folder (which the gateway reads, and compose mounts into
 * it) into the CA folder, keeping the CA that clients already trust. Returns the old path when it
 * moved one. A copy of the same key already in place is just removed; a different key is refused.
 */
export async function relocateLegacyCaKey(certDir: string, caKey: string): Promise<string | undefined> {
  const legacy = legacyCaKeyPath(certDir);
  if (path.resolve(caKey) === legacy || !(await fileExists(legacy))) return undefined;
  const content = await fs.readFile(legacy, 'utf8');
  if (await fileExists(caKey)) {
    if ((await fs.readFile(caKey, 'utf8')) !== content) {
      throw new CertificateError(`${legacy} and ${caKey} are different keys: keep the one that belongs to ca.crt in ${caKey} and remove ${legacy}`);
    }
  } else {
    await makeDirectory(path.dirname(caKey), { private: true });
    await writeFileAtomic(caKey, content, KEY_MODE);
  }
  try {
    await fs.rm(legacy);
  } catch (error) {
    throw new CertificateError(`copied ${legacy} to ${caKey} but cannot remove ${legacy}: ${(error as Error).message}; remove it by hand`);
  }
  return legacy;
}

/** A new CA limited to `hosts`; its key goes to `paths.caKey` (0600, folder 0700), its certificate to `paths.caCert`. */
export async function createAuthority(paths: CaPaths, hosts: string[]): Promise<Authority> {
  const keys = await generateRsaKey();
  // The hostname tells apart the CAs of two machines once both are trusted somewhere.
  const subject = [{ name: 'commonName', value: `registry-gateway local CA (${os.hostname()})` }];
  const cert = buildCertificate({
    subject,
    issuer: subject,
    publicKey: keys.publicKey,
    days: CA_DAYS,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
      nameConstraintsExtension(hosts),
    ],
  });
  signCertificate(cert, keys.privateKeyPem);
  await makeDirectory(path.dirname(paths.caKey), { private: true });
  await writeFileAtomic(paths.caKey, keys.privateKeyPem, KEY_MODE);
  await writeFileAtomic(paths.caCert, nodeForge().pki.certificateToPem(cert), CERT_MODE);
  return { cert, privateKeyPem: keys.privateKeyPem };
}

export async function loadAuthority(paths: CaPaths): Promise<Authority> {
  const { caCert, caKey } = paths;
  const cert = parseOrRefuse(caCert, await fs.readFile(caCert, 'utf8'), (pem) => nodeForge().pki.certificateFromPem(pem));
  const privateKeyPem = await fs.readFile(caKey, 'utf8');
  const key = parseOrRefuse(caKey, privateKeyPem, (pem) => nodeForge().pki.privateKeyFromPem(pem));
  const certKey = cert.publicKey as RsaPublicKey;
  if (!certKey.n.equals(key.n) || !certKey.e.equals(key.e)) {
    throw new CertificateError(`${caKey} is not the private key of ${caCert}`);
  }
  const constraints = cert.getExtension('basicConstraints') as { cA?: boolean } | undefined;
  if (!constraints?.cA) throw new CertificateError(`${caCert} is not a CA certificate (basicConstraints cA is not set)`);
  if (cert.validity.notAfter.getTime() <= Date.now()) {
    throw new CertificateError(`${caCert} expired on ${cert.validity.notAfter.toISOString()}; remove ${caCert} and ${caKey} to create a new CA`);
  }
  return { cert, privateKeyPem };
}

/** Refuses hosts the CA may not sign for: clients would reject such a certificate. */
export function checkHostsPermitted(authority: Authority, hosts: string[], paths: CaPaths): void {
  const limits = nameLimits(authority.cert);
  if (limits === undefined) return;
  const refused = hosts.filter((host) => !permits(limits, host));
  if (refused.length === 0) return;
  throw new CertificateError(
    `the CA ${paths.caCert} may only sign for ${describeLimits(limits)}, not for ${refused.join(', ')}. ` +
      `For other names make a new CA: move ${paths.caCert} and ${paths.caKey} away and run this again ` +
      '(every client must then trust the new ca.crt)',
  );
}

export function describeLimits(limits: NameLimits): string {
  const dnsNames = limits.dnsNames.filter((name) => name !== NO_DNS_NAME);
  const parts: string[] = [];
  if (dnsNames.length > 0) parts.push(`${dnsNames.join(', ')} (and names below ${dnsNames.length > 1 ? 'them' : 'it'})`);
  if (limits.ipAddresses.length > 0) parts.push(limits.ipAddresses.join(', '));
  return parts.length > 0 ? parts.join('; ') : 'no name at all';
}

function permits(limits: NameLimits, host: string): boolean {
  if (net.isIP(host)) return limits.ipAddresses.includes(host);
  const name = host.replace(/^\*\./, '');
  return limits.dnsNames.some((limit) => name === limit || name.endsWith(`.${limit}`));
}

/**
 * The CA's name constraints, or undefined when it has none (CAs made before they were added,
 * which stay valid rather than break what clients trust).
 */
export function nameLimits(cert: forge.pki.Certificate): NameLimits | undefined {
  const extension = (cert.extensions as { id?: string; value?: unknown }[]).find((entry) => entry.id === NAME_CONSTRAINTS_OID);
  if (typeof extension?.value !== 'string') return undefined;
  const limits: NameLimits = { dnsNames: [], ipAddresses: [] };
  const root = nodeForge().asn1.fromDer(extension.value);
  for (const subtrees of root.value as forge.asn1.Asn1[]) {
    // [0] permittedSubtrees; the [1] excluded ones only narrow further.
    if (subtrees.type !== 0) continue;
    for (const subtree of subtrees.value as forge.asn1.Asn1[]) {
      const base = (subtree.value as forge.asn1.Asn1[])[0];
      if (base?.type === 2) limits.dnsNames.push(String(base.value).toLowerCase());
      if (base?.type === 7) limits.ipAddresses.push(ipFromBytes(String(base.value)));
    }
  }
  return limits;
}

/**
 * Critical nameConstraints (RFC 5280 4.2.1.10) permitting the DNS names and IP addresses the CA is
 * made for. Names of a kind not listed would be unconstrained, so a CA with no DNS host permits only
 * `.invalid`, and one with no IP address excludes every address. forge has no encoder for the
 * extension, so the DER is built here and added as raw bytes.
 */
function nameConstraintsExtension(hosts: string[]): object {
  const { asn1 } = nodeForge();
  const { CONTEXT_SPECIFIC, UNIVERSAL } = asn1.Class;
  const generalName = (tag: number, bytes: string) => asn1.create(CONTEXT_SPECIFIC, tag, false, bytes);
  const subtree = (name: forge.asn1.Asn1) => asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, [name]);
  const dnsNames = [...new Set(hosts.filter((host) => !net.isIP(host)).map((host) => host.replace(/^\*\./, '')))];
  const addresses = hosts.filter((host) => net.isIP(host));
  const permitted = [
    ...(dnsNames.length > 0 ? dnsNames : [NO_DNS_NAME]).map((name) => subtree(generalName(2, name))),
    ...addresses.map((address) => subtree(generalName(7, ipAddressBytes(address) + hostMask(address)))),
  ];
  // Address and mask all zero: every IPv4 (8 bytes) or IPv6 (32 bytes) address.
  const excluded = addresses.length > 0 ? [] : [8, 32].map((length) => subtree(generalName(7, '\0'.repeat(length))));
  const parts = [asn1.create(CONTEXT_SPECIFIC, 0, true, permitted)];
  if (excluded.length > 0) parts.push(asn1.create(CONTEXT_SPECIFIC, 1, true, excluded));
  const der = asn1.toDer(asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, parts)).getBytes();
  return { id: NAME_CONSTRAINTS_OID, critical: true, value: der };
}

/** All ones: the subtree is the single address. */
function hostMask(address: string): string {
  return '\xff'.repeat(net.isIPv4(address) ? 4 : 16);
}

function ipFromBytes(bytes: string): string {
  const octets = [...bytes.slice(0, bytes.length / 2)].map((char) => char.charCodeAt(0));
  if (octets.length === 4) return octets.join('.');
  const groups: string[] = [];
  for (let i = 0; i < octets.length; i += 2) groups.push(((octets[i]! << 8) | octets[i + 1]!).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
