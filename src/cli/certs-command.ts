// The `gateway certs` command and its `show` subcommand: make the local CA and certificates once, then report on them.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { legacyCaKeyPath, relocateLegacyCaKey } from '../tls/ca.js';
import { certificatePaths, createCertificates, defaultHosts, validateHost } from '../tls/certs.js';
import { describeCertificates } from '../tls/certs-show.js';
import { loadConfig } from '../config/config.js';
import { CertificateError, CliError } from '../errors.js';
import { displayPath } from '../tls/trust.js';
import { settingDefault } from '../config/settings.js';
import { fileExists } from '../tls/x509.js';
import { issueWithAcme } from './certs-acme.js';
import { renewalTime } from '../tls/acme/manager.js';
import { acmePaths, readCertificate } from '../tls/acme/store.js';

/** The port of the `listen` setting's default, written once in the settings table. */
const defaultListenPort = (settingDefault('listen') ?? '').split(':').pop() ?? '';

interface CreateOptions {
  config?: string;
  acme?: boolean;
  show?: boolean;
  dir: string;
  caDir?: string;
  host?: string[];
  force?: boolean;
  port: string;
}

interface ShowOptions {
  config?: string;
  dir?: string;
  caDir?: string;
  port?: string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`--port must be a port number (1-65535), got "${value}"`, 2);
  return port;
}

async function create(options: CreateOptions): Promise<void> {
  if (options.acme && options.show) throw new CliError('--acme and --show do not go together: run one, then the other', 2);
  if (options.acme) return issueWithAcme(options);
  if (options.show) return show({ config: options.config });
  const hosts = [...new Set((options.host?.length ? options.host : defaultHosts()).map(validateHost))];
  const port = parsePort(options.port);
  const paths = certificatePaths(options.dir, options.caDir);
  const out: string[] = [];
  // Before anything can be refused: the key of a CA that clients trust leaves the folder the gateway reads.
  const moved = paths.caDir === paths.dir ? undefined : await relocateLegacyCaKey(paths.dir, paths.caKey);
  if (moved) out.push(`moved   CA key               ${displayPath(moved)} to ${displayPath(paths.caKey)} (the gateway never reads it)`);
  if (moved && !options.force && (await fileExists(paths.serverCert))) {
    out.push(`kept    server certificate   ${displayPath(paths.serverCert)}: \`gateway certs show\` prints it, --force replaces it`);
    process.stdout.write(`${out.join('\n')}\n`);
    return;
  }

  const files = await createCertificates({ dir: options.dir, caDir: options.caDir, hosts, force: options.force });
  const said = (created: boolean, what: string, where: string) => `${created ? 'created' : 'kept   '} ${what.padEnd(20)} ${where}`;
  out.push(
    said(files.createdCa, 'CA', `${displayPath(files.caCert)} (key ${displayPath(files.caKey)}, never read by the gateway)`),
    said(files.createdServer, 'server certificate', `${displayPath(files.serverCert)} (key ${displayPath(files.serverKey)})`),
    said(files.createdToken, 'token signing key', `${displayPath(files.tokenKey)} (certificate ${displayPath(files.tokenCert)})`),
    '',
  );
  const report = await describeCertificates({
    serverCert: files.serverCert,
    caCert: files.caCert,
    caKey: files.caKey,
    legacyCaKey: legacyCaKeyPath(files.dir),
    port,
    tokenCert: files.tokenCert,
  });
  process.stdout.write(`${out.join('\n')}\n${report.text}`);
}

async function show(options: ShowOptions): Promise<void> {
  const { config } = loadConfig({ file: options.config, env: process.env, cwd: process.cwd() });
  const serverCert = options.dir === undefined ? config.tlsCert : path.resolve(options.dir, 'server.crt');
  const certDir = path.dirname(serverCert);
  const paths = certificatePaths(certDir, options.caDir);
  const publicUrl = config.publicUrl;
  const port = options.port !== undefined ? parsePort(options.port) : publicUrl ? Number(publicUrl.port || 443) : config.listen.port;
  const tokenCert = options.dir === undefined ? config.tokenCert : paths.tokenCert;
  const acme = config.acme ? await describeAcme(config.acme.domains, certDir) : '';
  const served = acme.startsWith('ACME certificate (served');
  let report;
  try {
    report = await describeCertificates({
      serverCert,
      caCert: paths.caCert,
      caKey: paths.caKey,
      legacyCaKey: legacyCaKeyPath(certDir),
      port,
      publicHost: publicUrl?.hostname,
      tokenCert: existsSync(tokenCert) ? tokenCert : undefined,
    });
  } catch (error) {
    // With an ACME certificate in service, a missing local one is worth a line, not a failure.
    if (!(served && error instanceof CertificateError)) throw error;
    process.stdout.write(`${acme}The local certificate: ${error.message}\n`);
    return;
  }
  process.stdout.write(acme + report.text);
  if (!report.usable && !served) process.exitCode = 1;
}

/** The ACME certificate on disk, when ACME is on: what clients get once it is issued. */
async function describeAcme(domains: readonly string[], certDir: string): Promise<string> {
  const paths = acmePaths(certDir);
  const disk = await readCertificate(paths, domains, Date.now());
  if (disk.kind !== 'ok') {
    const state = disk.kind === 'missing' ? 'not issued yet' : `not usable: ${disk.reason}`;
    return `ACME certificate for ${domains.join(', ')}: ${state} (${displayPath(paths.cert)}); \`gateway certs --acme\` gets one now.\nUntil then the gateway serves its local certificate:\n\n`;
  }
  const { certificate } = disk;
  return [
    `ACME certificate (served): ${displayPath(paths.cert)}`,
    `  names:   ${certificate.names.join(', ')}`,
    `  issuer:  ${certificate.issuer}`,
    `  expires: ${certificate.notAfter.toISOString()} (renewed from about ${new Date(renewalTime(certificate, 0)).toISOString()})`,
    '  Clients that trust its issuer (public ACME CAs are in every system store) need no set-up.',
    '',
    'The local certificate, served only before the first ACME certificate or with ACME off:',
    '',
    '',
  ].join('\n');
}

/**
 * `gateway certs [options]` creates; `gateway certs show [options]` reports. Added with the program's
 * settings (exit override, help after errors); the program needs positional options, or it would
 * take `show --dir` as the parent's --dir.
 */
export function addCertsCommand(cli: Command): void {
  const certs = cli
    .command('certs')
    .description('create a local CA (once), a server certificate signed by it, and the token signing key; `certs show` reports on them')
    .option('--dir <dir>', 'folder the gateway reads: server and token keys, and ca.crt for clients', 'certs')
    .option('--ca-dir <dir>', 'folder for the CA key, which the gateway never reads (default: ca beside --dir)')
    .option('--host <host>', 'DNS name or IP address for the certificate, repeatable (default: localhost, 127.0.0.1, ::1 and this hostname); a new CA may sign for these names only', collect)
    .option('--port <port>', 'port clients use, for the trust instructions', defaultListenPort)
    .option('--force', 'replace an existing server certificate (the CA is kept)')
    .option('--acme', 'instead: get the ACME certificate now, in the foreground, printing each step (needs the ACME settings; the gateway must not be running on the port)')
    .option('--show', 'instead: what `certs show` prints')
    .option('-c, --config <file>', 'YAML file with settings (for --acme and --show)')
    .action(create);
  certs
    .command('show')
    .description("print the server certificate's names, issuer, expiry and chain to ca.crt, and how each client trusts the CA")
    .option('-c, --config <file>', 'YAML file with settings (for tls_cert, listen and public_url)')
    .option('--dir <dir>', 'certificate folder (default: the folder of tls_cert)')
    .option('--ca-dir <dir>', 'CA key folder (default: ca beside the certificate folder)')
    .option('--port <port>', "port clients use (default: public_url's, else listen's)")
    .action(show);
}
