// What `gateway certs show` reports for the files on disk: the server certificate's names, issuer, expiry and chain, and where the CA key is.
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { describeLimits, nameLimits } from './ca.js';
import { CertificateError } from '../errors.js';
import { isMissing } from '../config/files.js';
import { clientAddress, displayPath, trustInstructions } from './trust.js';
import { DAY_MS, nodeForge } from './x509.js';

export interface ShowOptions {
  serverCert: string;
  caCert: string;
  /** Where the CA key belongs (outside what the gateway reads). */
  caKey: string;
  /** Where versions before the CA folder left it: inside the certificate folder. */
  legacyCaKey: string;
  /** The port clients use. */
  port: number;
  /** The configured public host (public_url), which wins over the certificate's names. */
  publicHost?: string;
  tokenCert?: string;
  now?: Date;
}

export interface CertificateReport {
  text: string;
  /** False when the certificate cannot serve: expired, not yet valid, or not signed by ca.crt beside it. */
  usable: boolean;
}

export async function describeCertificates(options: ShowOptions): Promise<CertificateReport> {
  const now = options.now ?? new Date();
  const server = await readCertificate(options.serverCert, true);
  const ca = await readCertificate(options.caCert, false);
  const names = subjectAltNames(server);
  const validFrom = new Date(server.validFrom);
  const validTo = new Date(server.validTo);
  const daysLeft = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS);
  const problems: string[] = [];
  const notes: string[] = [];

  let validity = `${isoMinute(validFrom)} to ${isoMinute(validTo)}`;
  if (validTo <= now) {
    validity += ` (EXPIRED ${-daysLeft} days ago)`;
    problems.push('the server certificate has expired: clients refuse it; make a new one with `gateway certs --force`');
  } else if (validFrom > now) {
    validity += ' (NOT YET VALID: check the clock)';
    problems.push('the server certificate is not valid yet');
  } else {
    validity += ` (${daysLeft} days left)`;
    if (daysLeft < 30) notes.push('the server certificate expires within 30 days: renew it with `gateway certs --force` (the CA is kept)');
  }

  const rows: [string, string][] = [
    ['server certificate', displayPath(options.serverCert)],
    ['names', names.length > 0 ? names.join(', ') : '(none: clients will refuse it)'],
    ['issuer', server.issuer.replace(/\n/g, ', ')],
    ['valid', validity],
  ];
  if (ca === undefined) {
    rows.push(['chain', `no ${displayPath(options.caCert)}: nothing to trust if a public CA issued the certificate`]);
  } else if (server.checkIssued(ca) && server.verify(ca.publicKey)) {
    rows.push(['chain', `signed by ${displayPath(options.caCert)} (valid until ${isoMinute(new Date(ca.validTo))})`]);
    rows.push(['CA may sign for', caLimits(ca)]);
  } else {
    rows.push(['chain', `NOT signed by ${displayPath(options.caCert)}`]);
    problems.push(`clients that trust ${displayPath(options.caCert)} refuse this certificate; it belongs to another CA`);
  }
  if (ca !== undefined) rows.push(['CA key', await caKeyState(options, notes)]);

  if (options.publicHost !== undefined && !coversHost(server, options.publicHost)) {
    problems.push(`the certificate does not name the public host ${options.publicHost}: clients refuse it there`);
  }

  const hostPort = clientAddress({ names, port: options.port, publicHost: options.publicHost });
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`);
  for (const problem of problems) lines.push(`problem: ${problem}`);
  for (const note of notes) lines.push(`note: ${note}`);
  if (ca !== undefined) {
    const tokenCert = options.tokenCert === undefined ? undefined : displayPath(options.tokenCert);
    lines.push('', trustInstructions({ hostPort, caCert: displayPath(options.caCert), tokenCert }));
  }
  return { text: `${lines.join('\n')}\n`, usable: problems.length === 0 };
}

async function readCertificate(file: string, required: true): Promise<X509Certificate>;
async function readCertificate(file: string, required: false): Promise<X509Certificate | undefined>;
async function readCertificate(file: string, required: boolean): Promise<X509Certificate | undefined> {
  let pem: Buffer;
  try {
    pem = await fs.readFile(file);
  } catch (error) {
    if (isMissing(error) && !required) return undefined;
    if (isMissing(error)) throw new CertificateError(`${file} does not exist: create it with \`gateway certs\` (or point --dir or tls_cert at your certificate)`);
    throw new CertificateError(`cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new CertificateError(`${file} is not a PEM certificate: ${(error as Error).message}`);
  }
}

/** "DNS:a, IP Address:b" as plain names; IPv6 in its short form. */
export function subjectAltNames(cert: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    const [type, value = ''] = entry.split(/:(.*)/s);
    if (type === 'DNS') names.push(value);
    if (type === 'IP Address') names.push(value.includes(':') ? new URL(`http://[${value}]/`).hostname.slice(1, -1) : value);
  }
  return names;
}

function coversHost(cert: X509Certificate, host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  return (bare.includes(':') || /^[\d.]+$/.test(bare) ? cert.checkIP(bare) : cert.checkHost(bare)) !== undefined;
}

function caLimits(ca: X509Certificate): string {
  let limits;
  try {
    limits = nameLimits(nodeForge().pki.certificateFromPem(ca.toString()));
  } catch {
    return '(cannot read its name constraints)';
  }
  return limits === undefined ? 'any name (no name constraints: a CA made by an older version)' : describeLimits(limits);
}

async function caKeyState(options: ShowOptions, notes: string[]): Promise<string> {
  const [inPlace, legacy] = await Promise.all([exists(options.caKey), exists(options.legacyCaKey)]);
  if (legacy) {
    notes.push(`the CA key ${displayPath(options.legacyCaKey)} sits in the folder the gateway reads: \`gateway certs\` moves it to ${displayPath(options.caKey)}`);
    return `${displayPath(options.legacyCaKey)} (should be ${displayPath(options.caKey)})`;
  }
  if (inPlace) return `${displayPath(options.caKey)} (never read by the gateway)`;
  return `not at ${displayPath(options.caKey)}: \`gateway certs --force\` needs it to make a new server certificate`;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

function isoMinute(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
