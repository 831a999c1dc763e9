// One ACME order, step by step with acme-client: account, order, challenges, finalize, certificate; each step reported, each failure named.

import https from 'node:https';
import tls from 'node:tls';
import type * as Acme from 'acme-client';
import type { AcmeChallenges } from './challenges.js';

export type ChallengeType = 'tls-alpn-01' | 'http-01';

export interface OrderOptions {
  directoryUrl: string;
  /** Extra CA certificates (PEM) that may sign the ACME server's own HTTPS certificate. */
  ca?: string;
  email?: string;
  domains: readonly string[];
  challenge: ChallengeType;
  challenges: AcmeChallenges;
  account: { keyPem: string; url?: string };
  /** Told each step as it happens, for the log or the terminal. */
  step(message: string): void;
  /** Told the account URL as soon as the account is registered or found, to be kept. */
  onAccount?(url: string): Promise<void>;
}

export interface Issued {
  certPem: string;
  keyPem: string;
  accountUrl: string;
}

/** A failed order: which step, for which domain, and the ACME server's own words. */
export class AcmeError extends Error {
  override readonly name = 'AcmeError';
  constructor(
    readonly step: string,
    message: string,
    readonly domain?: string,
  ) {
    super(message);
  }
}

type AcmeLibrary = typeof Acme;
let library: Promise<AcmeLibrary> | undefined;

/**
 * acme-client, loaded on first use: with axios and an X.509 library it is the biggest dependency
 * (~10 MiB of memory per process), and a gateway without ACME never needs it.
 */
export function acmeLibrary(): Promise<AcmeLibrary> {
  library ??= import('acme-client').then((module) => module.default as AcmeLibrary);
  return library;
}

/** No HTTP request to the ACME server may hang an order: every one is bounded. */
const REQUEST_TIMEOUT_MS = 30_000;
const extraCas = new Set<string>();

/**
 * acme-client sends every request through its own axios instance; its agent trusts the system's
 * roots plus every extra CA configured in this process (tests run several gateways in one process).
 * Nothing else in the process is affected.
 */
function trustAcmeServer(acme: AcmeLibrary, ca: string | undefined): void {
  if (ca !== undefined && !extraCas.has(ca)) {
    extraCas.add(ca);
    acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...tls.rootCertificates, ...extraCas], keepAlive: false });
  }
  acme.axios.defaults.timeout = REQUEST_TIMEOUT_MS;
  // acme-client retries a request that got no answer 5 times over about a minute; the manager's own
  // backoff does that job, so one quick retry is enough here.
  const settings = (acme.axios.defaults as unknown as { acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number } }).acmeSettings;
  if (settings) {
    settings.retryMaxAttempts = 1;
    settings.retryDefaultDelay = 1;
  }
}

async function run<T>(step: string, action: () => Promise<T>, directoryUrl: string, domain?: string): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof AcmeError) throw error;
    throw new AcmeError(step, await explain(error, directoryUrl), domain);
  }
}

/**
 * acme-client 5.4 loses the cause of a request that got no answer (a TypeError reading 'config'
 * once its retries are spent): the directory is asked once more to say what is wrong.
 */
async function explain(error: unknown, directoryUrl: string): Promise<string> {
  if (!(error instanceof TypeError && error.message.includes("reading 'config'"))) return describe(error);
  const acme = await acmeLibrary();
  const reason = await new Promise<string>((resolve) => {
    const request = https.get(directoryUrl, { agent: acme.axios.defaults.httpsAgent as https.Agent | undefined, timeout: 10_000 }, (response) => {
      response.resume();
      resolve(`it answers now (HTTP ${response.statusCode}); the failure was passing`);
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('no answer within 10 s'), { code: 'ETIMEDOUT' })));
    request.on('error', (cause: NodeJS.ErrnoException) => resolve(cause.code && !cause.message.includes(cause.code) ? `${cause.message} (${cause.code})` : cause.message));
  });
  return `the ACME server ${new URL(directoryUrl).origin} could not be reached: ${reason}`;
}

/** The server's problem detail when there is one, else the network error (refused, timeout, bad certificate). */
function describe(error: unknown): string {
  const { message, code, response } = error as Error & { code?: string; response?: { status?: number; data?: unknown } };
  const data = response?.data as { detail?: string; type?: string } | undefined;
  if (data && typeof data === 'object' && typeof data.detail === 'string') return `${data.detail}${data.type ? ` (${data.type})` : ''}`;
  if (response?.status !== undefined) return `the server answered HTTP ${response.status}: is this an ACME directory URL?`;
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** Orders a certificate for every domain in one order; the challenges it serves are removed however it ends. */
export async function orderCertificate(options: OrderOptions): Promise<Issued> {
  const acme = await acmeLibrary();
  trustAcmeServer(acme, options.ca);
  const { step, directoryUrl: directory } = options;
  const client = new acme.Client({
    directoryUrl: options.directoryUrl,
    accountKey: options.account.keyPem,
    ...(options.account.url ? { accountUrl: options.account.url } : {}),
    backoffAttempts: 12,
    backoffMin: 1000,
    backoffMax: 10_000,
  });

  if (!options.account.url) {
    // A key registered before (its URL lost) is found again rather than registered twice. The server's
    // "no such account" is an answer; no answer at all (acme-client's TypeError) ends the order here.
    const existing = await run(
      'account',
      () =>
        client.createAccount({ onlyReturnExisting: true }).then(
          () => true,
          (error: unknown) => {
            if (error instanceof TypeError) throw error;
            return false;
          },
        ),
      directory,
    );
    if (existing) step(`found the account of this key at ${options.directoryUrl}`);
    else {
      step(`registering an account at ${options.directoryUrl}${options.email ? ` for ${options.email}` : ''}`);
      await run('account', () => client.createAccount({ termsOfServiceAgreed: true, ...(options.email ? { contact: [`mailto:${options.email}`] } : {}) }), directory);
    }
    await options.onAccount?.(client.getAccountUrl());
  }
  const accountUrl = client.getAccountUrl();

  step(`ordering a certificate for ${options.domains.join(', ')}`);
  const order = await run('order', () => client.createOrder({ identifiers: options.domains.map((value) => ({ type: 'dns', value })) }), directory);
  const authorizations = await run('authorizations', () => client.getAuthorizations(order), directory);
  for (const authz of authorizations) {
    const domain = authz.identifier.value;
    if (authz.status === 'valid') {
      step(`${domain}: already validated`);
      continue;
    }
    await validate(client, authz, domain, options);
  }

  step('finalizing the order');
  const [keyBuffer, csr] = await run('finalize', async () => acme.crypto.createCsr({ commonName: options.domains[0]!, altNames: [...options.domains] }, await acme.crypto.createPrivateEcdsaKey('P-256')), directory);
  const finalized = await run('finalize', () => client.finalizeOrder(order, csr), directory);
  const certPem = await run('certificate', () => client.getCertificate(finalized), directory);
  step('certificate issued');
  return { certPem, keyPem: keyBuffer.toString(), accountUrl };
}

async function validate(client: Acme.Client, authz: Acme.Authorization, domain: string, options: OrderOptions): Promise<void> {
  const acme = await acmeLibrary();
  const challenge = authz.challenges.find((offered) => offered.type === options.challenge);
  if (!challenge) {
    const offered = authz.challenges.map((offered) => offered.type).join(', ') || 'none';
    throw new AcmeError('challenge', `the server offers no ${options.challenge} challenge (offered: ${offered})`, domain);
  }
  const keyAuthorization = await run('challenge', () => client.getChallengeKeyAuthorization(challenge), options.directoryUrl, domain);
  if (challenge.type === 'http-01') {
    options.challenges.addHttp(challenge.token, keyAuthorization);
  } else {
    const [key, cert] = await run('challenge', async () => acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey('P-256')), options.directoryUrl, domain);
    options.challenges.addAlpn(domain, key, cert);
  }
  try {
    options.step(`${domain}: answering the ${challenge.type} challenge`);
    // Every listener that may be asked has the answer before the CA is told to ask.
    await options.challenges.published();
    await run('validation', () => client.completeChallenge(challenge), options.directoryUrl, domain);
    await run('validation', () => client.waitForValidStatus(challenge), options.directoryUrl, domain);
    options.step(`${domain}: validated`);
  } finally {
    if (challenge.type === 'http-01') options.challenges.removeHttp(challenge.token);
    else options.challenges.removeAlpn(domain);
  }
}
