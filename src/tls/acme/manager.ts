// Keeps an ACME certificate in the running server: use a fresh one from disk, else order one (one gateway at a time), renew at a third of its life left, back off on failure.

import type { Logger } from 'pino';
import { editFileExclusively, FileLockError } from '../../config/files.js';
import type { AcmeChallenges } from './challenges.js';
import { AcmeError, acmeLibrary, orderCertificate, type ChallengeType } from './order.js';
import { readAccount, readCertificate, writeAccountKey, writeAccountUrl, writeCertificate, type AcmePaths, type StoredCertificate } from './store.js';

export interface AcmeSettings {
  directoryUrl: string;
  domains: readonly string[];
  email?: string;
  ca?: string;
  challenge: ChallengeType;
}

export interface AcmeManagerOptions extends AcmeSettings {
  paths: AcmePaths;
  challenges: AcmeChallenges;
  logger: Logger;
  /** Puts a certificate into the running TLS server (new connections get it; open ones keep theirs). */
  install(certPem: string, keyPem: string): void;
  /** First retry after a failure, doubled each time up to maxRetryMs, with ±20% jitter (default 1 min). */
  retryMs?: number;
  /** Longest wait between failed attempts (default 6 h). */
  maxRetryMs?: number;
  now?(): number;
  /** Hears that status() may have changed (a certificate served, an attempt failed or planned). */
  onChange?(): void;
}

export interface AcmeStatus {
  /** waiting: no ACME certificate yet; valid: one is served; failing: the last attempt failed. */
  state: 'waiting' | 'valid' | 'failing';
  domains: readonly string[];
  notAfter?: string;
  renewAt?: string;
  issuer?: string;
  lastError?: string;
  nextAttempt?: string;
}

/** The longest a timer is set for; past it the manager wakes, finds nothing due, and sleeps again. */
const MAX_TIMER_MS = 24 * 60 * 60 * 1000;
/** How soon to look again when another gateway holds the order lock. */
const LOCKED_RETRY_MS = 15_000;

/** When a certificate is due: a third of its life left, a little earlier at random so gateways sharing certs/ spread out. */
export function renewalTime(certificate: Pick<StoredCertificate, 'notBefore' | 'notAfter'>, random = Math.random()): number {
  const start = certificate.notBefore.getTime();
  const end = certificate.notAfter.getTime();
  const lifetime = end - start;
  return end - lifetime / 3 - random * lifetime * 0.02;
}

export class AcmeManager {
  readonly #options: AcmeManagerOptions;
  readonly #now: () => number;
  #served: StoredCertificate | undefined;
  #renewAt: number | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #nextAttempt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(options: AcmeManagerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Before the server starts: installs a valid, matching certificate from disk, if there is one,
   * so the first client already gets it. True when one was installed.
   */
  async loadFromDisk(): Promise<boolean> {
    const disk = await readCertificate(this.#options.paths, this.#options.domains, this.#now());
    if (disk.kind === 'ok') this.#serve(disk.certificate, 'loaded from disk');
    else if (disk.kind === 'unusable') this.#options.logger.warn({ file: this.#options.paths.cert, reason: disk.reason }, 'ACME certificate on disk ignored, not served');
    return disk.kind === 'ok';
  }

  /** Once the server listens (validators must reach it): orders now if nothing valid is served, else waits until renewal is due. */
  begin(): void {
    if (!this.#served) this.#options.logger.warn({ domains: this.#options.domains }, 'no ACME certificate yet: serving the local certificate until one is issued');
    this.#schedule(this.#served && this.#renewAt !== undefined ? this.#renewAt : this.#now());
  }

  /** SIGHUP: takes a newer valid certificate from disk (another gateway's, or `gateway certs --acme`). */
  async reload(): Promise<void> {
    const disk = await readCertificate(this.#options.paths, this.#options.domains, this.#now());
    if (disk.kind === 'ok' && disk.certificate.fingerprint !== this.#served?.fingerprint && disk.certificate.notAfter > (this.#served?.notAfter ?? new Date(0))) {
      this.#serve(disk.certificate, 'loaded from disk');
      this.#schedule(this.#renewAt!);
    }
  }

  status(): AcmeStatus {
    const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
    return {
      state: this.#lastError !== undefined ? 'failing' : this.#served ? 'valid' : 'waiting',
      domains: this.#options.domains,
      notAfter: this.#served?.notAfter.toISOString(),
      renewAt: iso(this.#renewAt),
      issuer: this.#served?.issuer,
      lastError: this.#lastError,
      nextAttempt: iso(this.#nextAttempt),
    };
  }

  /** Runs one check now (what the timer does): use disk, or order. Resolves when done; never throws. */
  checkNow(): Promise<void> {
    this.#running ??= this.#check().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(at: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#nextAttempt = at;
    const delay = Math.min(Math.max(0, at - this.#now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => void this.checkNow(), delay);
    this.#timer.unref();
    this.#options.onChange?.();
  }

  #serve(certificate: StoredCertificate, how: string): void {
    const renewed = this.#served !== undefined;
    this.#options.install(certificate.certPem, certificate.keyPem);
    this.#served = certificate;
    // The spread only moves a renewal earlier within what is still ahead: a certificate that is not
    // due when it is installed (one another gateway just ordered) is not made due by it.
    const spread = renewalTime(certificate);
    const unspread = renewalTime(certificate, 0);
    this.#renewAt = spread <= this.#now() && unspread > this.#now() ? unspread : spread;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#options.logger.info(
      { domains: certificate.names, notAfter: certificate.notAfter.toISOString(), renewAt: new Date(this.#renewAt).toISOString(), issuer: certificate.issuer },
      `ACME certificate ${how}${renewed ? ' (replacing the previous one)' : ''}`,
    );
  }

  /**
   * A certificate on disk, other than the one served, that is valid and not yet due: another gateway
   * (or `gateway certs --acme`) just ordered it. The one served is due once this is asked (its
   * renewal time is spread a little earlier), so finding it again must lead to an order, not back here.
   */
  async #freshFromDisk(): Promise<StoredCertificate | undefined> {
    const disk = await readCertificate(this.#options.paths, this.#options.domains, this.#now());
    if (disk.kind !== 'ok' || disk.certificate.fingerprint === this.#served?.fingerprint) return undefined;
    if (this.#served && disk.certificate.notAfter < this.#served.notAfter) return undefined;
    return renewalTime(disk.certificate, 0) > this.#now() ? disk.certificate : undefined;
  }

  async #check(): Promise<void> {
    const { logger, paths, domains } = this.#options;
    try {
      if (this.#renewAt !== undefined && this.#now() < this.#renewAt) {
        this.#schedule(this.#renewAt);
        return;
      }
      const fresh = await this.#freshFromDisk();
      if (fresh) {
        this.#serve(fresh, 'loaded from disk');
        this.#schedule(this.#renewAt!);
        return;
      }
      // One gateway orders; the others wait for the lock and then find its certificate on disk.
      const issued = await editFileExclusively(paths.cert, async () => {
        const renewed = await this.#freshFromDisk();
        if (renewed) return { certificate: renewed, how: 'loaded from disk (ordered by another gateway)' };
        return { certificate: await this.#order(), how: this.#served ? 'renewed' : 'issued' };
      });
      if (issued.certificate.fingerprint !== this.#served?.fingerprint) this.#serve(issued.certificate, issued.how);
      this.#schedule(this.#renewAt!);
    } catch (error) {
      if (this.#stopped) return;
      if (error instanceof FileLockError) {
        logger.info({ lock: paths.cert }, 'another gateway is ordering the ACME certificate; looking again shortly');
        this.#schedule(this.#now() + LOCKED_RETRY_MS);
        return;
      }
      this.#failed(error, domains);
    }
  }

  async #order(): Promise<StoredCertificate> {
    const { logger } = this.#options;
    return issueAndStore({ ...this.#options, now: this.#now(), step: (message) => logger.info({ directory: this.#options.directoryUrl }, `ACME: ${message}`) });
  }

  #failed(error: unknown, domains: readonly string[]): void {
    const { logger } = this.#options;
    this.#failures += 1;
    const base = this.#options.retryMs ?? 60_000;
    const max = this.#options.maxRetryMs ?? 6 * 60 * 60 * 1000;
    const delay = Math.min(max, base * 2 ** (this.#failures - 1)) * (0.8 + Math.random() * 0.4);
    const reason = error instanceof Error ? error.message : String(error);
    this.#lastError = error instanceof AcmeError ? `${error.step}${error.domain ? ` for ${error.domain}` : ''}: ${reason}` : reason;
    const next = this.#now() + delay;
    const validUntil = this.#served?.notAfter;
    logger.error(
      {
        domains: error instanceof AcmeError && error.domain ? [error.domain] : domains,
        step: error instanceof AcmeError ? error.step : undefined,
        reason,
        attempt: this.#failures,
        retryAt: new Date(next).toISOString(),
        serving: validUntil ? `the previous certificate, valid until ${validUntil.toISOString()}` : 'the local certificate',
      },
      'ACME certificate order failed',
    );
    this.#schedule(next);
  }
}

export interface IssueOptions extends AcmeSettings {
  paths: AcmePaths;
  challenges: AcmeChallenges;
  step(message: string): void;
  now: number;
}

/**
 * One order, with the account key made on first use and every file written atomically; the caller
 * holds the order lock. What it returns was read back from disk and checked like any other.
 */
export async function issueAndStore(options: IssueOptions): Promise<StoredCertificate> {
  const { paths } = options;
  let account = await readAccount(paths, options.directoryUrl);
  if (account === undefined) {
    const acme = await acmeLibrary();
    account = { keyPem: (await acme.crypto.createPrivateEcdsaKey('P-256')).toString() };
    await writeAccountKey(paths, account.keyPem);
    options.step(`created the account key ${paths.accountKey}`);
  }
  const issued = await orderCertificate({ ...options, account, onAccount: (url) => writeAccountUrl(paths, options.directoryUrl, url) });
  await writeCertificate(paths, issued.certPem, issued.keyPem);
  const stored = await readCertificate(paths, options.domains, options.now);
  if (stored.kind !== 'ok') throw new AcmeError('certificate', `the issued certificate is not usable: ${stored.kind === 'unusable' ? stored.reason : 'missing'}`);
  return stored.certificate;
}
