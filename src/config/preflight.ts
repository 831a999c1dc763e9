// Every check `serve` makes before it starts anything, shared with `gateway config check` so the two cannot disagree.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { AccessFileError, loadAccessFile } from '../access/access-rules.js';
import { certificatePaths } from '../tls/certs.js';
import { readAcmeCa } from '../tls/acme/from-config.js';
import { acmePaths } from '../tls/acme/store.js';
import { parseTokenFile } from '../auth/ci-tokens.js';
import { checkProviderFiles } from '../auth/chain-setup.js';
import { checkSignInFiles } from '../ui/sign-in-setup.js';
import type { Config } from './config.js';
import { dataDirInUse } from './data-lock.js';
import { ConfigError } from '../errors.js';
import { readHtpasswdFile } from '../auth/htpasswd.js';
import { findRegistryBinary, registryInstallHint } from '../registry/registry-setup.js';
import { settingName, type SettingKey } from './settings.js';
import { TokenAuthority } from '../auth/token.js';
import { syslogProblem, syslogTarget, type SyslogTarget } from '../ops/audit-syslog.js';
import { readWebhookCa, readWebhookSecret } from '../ops/webhook-config.js';

export interface Preflight {
  /** What `serve` creates because it is missing (the first run). */
  creates: { tls: boolean; tokenKey: boolean; htpasswd: boolean };
  /** The registry binary, when the gateway runs its own registry. */
  registryBinary: string | undefined;
  /** Whether a running gateway holds the data folder now (then `serve` would refuse to start). */
  dataDirInUse: boolean;
  /** Worth a warning, but no reason to refuse (an expired certificate, say); `serve` logs them. */
  warnings: string[];
  /** What the htpasswd and access files say about themselves; `serve` logs these when it loads them. */
  fileRemarks: string[];
}

const certsHint = 'create them first with `gateway certs` (under compose: `docker compose run --rm certs`)';
const tokenKeyHint = 'create them first: `gateway certs` makes them with the server certificate (under compose: `docker compose run --rm certs`)';
const usersHint = 'create it first with `gateway user add admin` (under compose: `docker compose run --rm user add admin`)';

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

/** The reason a ConfigError gives, without the setting it names. */
function reasonOf(error: unknown): string {
  return error instanceof ConfigError ? error.reason : (error as Error).message;
}

function bothOrNeither(first: string, second: string, firstKey: SettingKey, secondKey: SettingKey): boolean {
  const hasFirst = existsSync(first);
  const hasSecond = existsSync(second);
  if (hasFirst !== hasSecond) {
    const [present, missing, key] = hasFirst ? [first, second, secondKey] : [second, first, firstKey];
    throw new ConfigError(settingName(key), `${missing} is missing while ${present} exists; provide both or neither`);
  }
  return hasFirst;
}

async function readSettingFile(key: SettingKey, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(settingName(key), `cannot read ${file} (${codeOf(error)})`);
  }
}

/** The nearest folder that exists on the way up to `dir`: where a missing file's folders get made. */
function existingAncestor(dir: string): string {
  let current = dir;
  while (!existsSync(current) && path.dirname(current) !== current) current = path.dirname(current);
  return current;
}

/** Refuses, with the command that makes the file, when a file `serve` would create cannot be written. */
async function mustBeCreatable(key: SettingKey, file: string, hint: string): Promise<void> {
  const folder = existingAncestor(path.dirname(file));
  try {
    await access(folder, fsConstants.W_OK);
  } catch (error) {
    const code = codeOf(error);
    const state = code === 'EROFS' ? 'read-only' : 'not writable';
    throw new ConfigError(settingName(key), `${file} does not exist and ${folder} is ${state} (${code}); ${hint}`);
  }
}

function pemCertificate(key: SettingKey, file: string, text: string): X509Certificate {
  try {
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate block');
    return new X509Certificate(text);
  } catch {
    throw new ConfigError(settingName(key), `${file} is not a PEM certificate`);
  }
}

function pemPrivateKey(key: SettingKey, file: string, text: string): KeyObject {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new ConfigError(settingName(key), `${file} is an encrypted private key; the gateway needs it unencrypted (PEM)`);
  }
  try {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new Error('no PEM private key block');
    return createPrivateKey(text);
  } catch {
    throw new ConfigError(settingName(key), `${file} is not a PEM private key`);
  }
}

async function checkTls(config: Readonly<Config>, warnings: string[]): Promise<boolean> {
  if (!bothOrNeither(config.tlsCert, config.tlsKey, 'tls_cert', 'tls_key')) {
    const folder = path.dirname(config.tlsCert);
    if (path.dirname(config.tlsKey) !== folder || path.basename(config.tlsCert) !== 'server.crt' || path.basename(config.tlsKey) !== 'server.key') {
      throw new ConfigError(
        settingName('tls_cert'),
        `${config.tlsCert} does not exist; create it, or leave GATEWAY_TLS_CERT/GATEWAY_TLS_KEY at their defaults to have them generated`,
      );
    }
    await mustBeCreatable('tls_cert', config.tlsCert, certsHint);
    // A new CA's key goes to its own folder beside the certificates.
    const { caKey } = certificatePaths(folder);
    if (!existsSync(caKey)) await mustBeCreatable('tls_cert', caKey, certsHint);
    return true;
  }
  const certText = await readSettingFile('tls_cert', config.tlsCert);
  const keyText = await readSettingFile('tls_key', config.tlsKey);
  const certificate = pemCertificate('tls_cert', config.tlsCert, certText);
  const key = pemPrivateKey('tls_key', config.tlsKey, keyText);
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError(settingName('tls_key'), `${config.tlsKey} is not the private key of the certificate ${config.tlsCert} (${settingName('tls_cert')})`);
  }
  try {
    createSecureContext({ cert: certText, key: keyText, minVersion: 'TLSv1.2' });
  } catch (error) {
    throw new ConfigError(settingName('tls_cert'), `${config.tlsCert} with the key ${config.tlsKey} cannot serve TLS: ${(error as Error).message}`);
  }
  if (Date.parse(certificate.validTo) <= Date.now()) warnings.push(`${config.tlsCert}: the certificate expired on ${certificate.validTo}; clients will refuse it`);
  return false;
}

async function checkTokenKey(config: Readonly<Config>): Promise<boolean> {
  if (!bothOrNeither(config.tokenKey, config.tokenCert, 'token_key', 'token_cert')) {
    await mustBeCreatable('token_key', config.tokenKey, tokenKeyHint);
    await mustBeCreatable('token_cert', config.tokenCert, tokenKeyHint);
    return true;
  }
  const keyText = await readSettingFile('token_key', config.tokenKey);
  const certText = await readSettingFile('token_cert', config.tokenCert);
  const key = pemPrivateKey('token_key', config.tokenKey, keyText);
  const certificate = pemCertificate('token_cert', config.tokenCert, certText);
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError(settingName('token_key'), `${config.tokenKey} is not the private key of the certificate ${config.tokenCert} (${settingName('token_cert')})`);
  }
  try {
    // What the token service itself refuses: key type and size, a certificate out of its validity period.
    new TokenAuthority({ privateKeyPem: keyText, certificatePem: certText, issuer: config.tokenIssuer, service: config.service, ttlSeconds: config.tokenTtlSeconds });
  } catch (error) {
    throw new ConfigError(settingName('token_key'), `${config.tokenKey} with ${config.tokenCert}: ${reasonOf(error)}`);
  }
  return false;
}

async function checkUsers(config: Readonly<Config>, remarks: string[]): Promise<boolean> {
  if (!existsSync(config.htpasswd)) {
    await mustBeCreatable('htpasswd', config.htpasswd, usersHint);
    return true;
  }
  let parsed;
  try {
    parsed = await readHtpasswdFile(config.htpasswd);
  } catch (error) {
    throw new ConfigError(settingName('htpasswd'), `cannot read ${config.htpasswd} (${codeOf(error)})`);
  }
  for (const problem of parsed.problems) remarks.push(`${config.htpasswd}: ${problem}`);
  if (parsed.users.size === 0) remarks.push(`${config.htpasswd}: no users, so nobody can log in (add one with \`gateway user add NAME\`)`);
  return false;
}

async function checkAccessFile(config: Readonly<Config>, remarks: string[]): Promise<void> {
  if (!existsSync(config.accessFile)) {
    if (config.accessFileRequired) throw new ConfigError(settingName('access'), `${config.accessFile} does not exist`);
    return;
  }
  try {
    remarks.push(...(await loadAccessFile(config.accessFile)).warnings);
  } catch (error) {
    if (error instanceof AccessFileError) throw new ConfigError(settingName('access'), error.message);
    throw error;
  }
}

async function checkCiTokens(config: Readonly<Config>): Promise<void> {
  // A missing file holds no tokens.
  if (!existsSync(config.ciTokensFile)) return;
  const text = await readSettingFile('ci_tokens', config.ciTokensFile);
  try {
    parseTokenFile(text, config.ciTokensFile);
  } catch (error) {
    throw new ConfigError(settingName('ci_tokens'), reasonOf(error));
  }
}

/** The registry binary to run, or a ConfigError saying how to get one. */
export function requireRegistryBinary(config: Readonly<Config>, env: NodeJS.ProcessEnv): string {
  const binary = findRegistryBinary(config.registryBin, env.PATH);
  if (binary) return binary;
  if (config.registryBin) throw new ConfigError(settingName('registry_bin'), `${config.registryBin} is not an executable file (or not on PATH). ${registryInstallHint}`);
  throw new ConfigError(settingName('upstream'), `no registry binary (docker-registry or registry) found on PATH. ${registryInstallHint}`);
}

async function checkDataDir(dataDir: string): Promise<void> {
  if (existsSync(dataDir) && !(await stat(dataDir)).isDirectory()) throw new ConfigError(settingName('data_dir'), `${dataDir} is not a folder`);
  const folder = existingAncestor(dataDir);
  try {
    await access(folder, fsConstants.W_OK);
  } catch (error) {
    const code = codeOf(error);
    throw new ConfigError(settingName('data_dir'), `${folder} is ${code === 'EROFS' ? 'read-only' : 'not writable'} (${code}); the embedded registry keeps its storage and config there`);
  }
}

/**
 * Reads and checks everything the configuration points at, changing nothing: certificates and keys
 * (readable, PEM, matching), users, access rules, CI tokens, and for the embedded registry its
 * binary and data folder. Throws a ConfigError naming the setting and the file for the first problem.
 */
export async function preflight(config: Readonly<Config>, env: NodeJS.ProcessEnv): Promise<Preflight> {
  const warnings: string[] = [];
  const fileRemarks: string[] = [];
  const tls = await checkTls(config, warnings);
  const tokenKey = await checkTokenKey(config);
  const htpasswd = await checkUsers(config, fileRemarks);
  await checkAccessFile(config, fileRemarks);
  await checkCiTokens(config);
  await checkProviderFiles(config.providers ?? []);
  await checkSignInFiles(config);
  if (config.auditLog !== undefined && config.auditLog !== 'stdout') await checkAuditLog(config.auditLog);
  if (config.redis?.passwordFile !== undefined) await readSettingFile('redis_password_file', config.redis.passwordFile);
  for (const webhook of config.webhooks ?? []) {
    readWebhookSecret(webhook);
    readWebhookCa(webhook);
  }
  if (config.acme) {
    readAcmeCa(config.acme.caFile);
    await mustBeCreatable('tls_cert', acmePaths(path.dirname(config.tlsCert)).cert, 'the ACME account and certificate are kept in certs/acme/ beside it');
  }
  const embedded = config.upstreams.length === 0;
  const registryBinary = embedded ? requireRegistryBinary(config, env) : undefined;
  if (embedded) await checkDataDir(config.dataDir);
  return {
    creates: { tls, tokenKey, htpasswd },
    registryBinary,
    dataDirInUse: embedded && (await dataDirInUse(config.dataDir)),
    warnings,
    fileRemarks,
  };
}

/** The audit file must be appendable (or creatable), syslog reachable: a trail that cannot be written is refused at start. */
async function checkAuditLog(file: string): Promise<void> {
  let syslog: SyslogTarget | undefined;
  try {
    syslog = syslogTarget(file);
  } catch (error) {
    throw new ConfigError(settingName('audit_log'), (error as Error).message);
  }
  if (syslog !== undefined) {
    const problem = syslogProblem(syslog);
    if (problem !== undefined) throw new ConfigError(settingName('audit_log'), problem);
    return;
  }
  if (!existsSync(file)) return mustBeCreatable('audit_log', file, 'create its folder, or point audit_log elsewhere');
  try {
    await access(file, fsConstants.W_OK);
  } catch (error) {
    throw new ConfigError(settingName('audit_log'), `cannot append to ${file} (${codeOf(error)})`);
  }
}
