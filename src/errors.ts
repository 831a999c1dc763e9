// Error classes with their registry error code and HTTP status, and the registry's JSON error body.

/** Error codes of the distribution spec (and errcode's UNAVAILABLE/UNKNOWN) that the gateway itself emits. */
export const registryErrorStatus = {
  UNAUTHORIZED: 401,
  DENIED: 403,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_UNKNOWN: 404,
  SIZE_INVALID: 400,
  DIGEST_INVALID: 400,
  MANIFEST_INVALID: 400,
  BLOB_UPLOAD_INVALID: 400,
  PAGINATION_NUMBER_INVALID: 400,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const;

export type RegistryErrorCode = keyof typeof registryErrorStatus;

export interface RegistryErrorBody {
  errors: { code: RegistryErrorCode; message: string; detail?: unknown }[];
}

/** An error that reaches the client as a registry-format JSON body with the code's status. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  readonly status: number;
  /** Extra response headers, e.g. the WWW-Authenticate challenge of a 401. */
  readonly headers: Record<string, string> = {};

  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly detail?: unknown,
    status?: number,
  ) {
    super(message);
    this.status = status ?? registryErrorStatus[code];
  }

  withHeader(name: string, value: string): this {
    this.headers[name] = value;
    return this;
  }

  toBody(): RegistryErrorBody {
    const entry: RegistryErrorBody['errors'][number] = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}

/*
 * One error type per layer, so each reaches the person who can act on it in their terms:
 *   RegistryError  a request the gateway answers with the registry's JSON error body (HTTP clients);
 *   ConfigError    start-up (`serve`, `config check`): a setting, or a file, folder or program a
 *                  setting names, that keeps the gateway from starting;
 *   CliError       a `gateway` command's own mistakes and refusals (the command line).
 * Modules that run inside the server throw RegistryError or ConfigError, never CliError.
 */

/** What keeps the gateway from starting; `key` names the setting, or the file and line, to fix. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    /** "GATEWAY_X (x)" for a setting, "FILE:LINE:COLUMN: x" for a value from the YAML file. */
    readonly key: string,
    /** What is wrong and, where there is one, what to do about it. */
    readonly reason: string,
  ) {
    super(`${key}: ${reason}`);
  }
}

/** A command-line mistake or a refused operation: printed as a plain message, exit code 1 or 2. */
/**
 * A certificate, key or CA that cannot be made or used as asked. Raised by the certificate modules,
 * which both `gateway certs` and the server's first start use: the CLI prints it (exit 2 when the
 * request itself was wrong), the server turns it into a ConfigError naming the setting.
 */
export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  constructor(
    message: string,
    /** The arguments were wrong (a bad host, lifetime or folder), not the files on disk. */
    readonly usage = false,
  ) {
    super(message);
  }
}

/** A shared file (CI tokens) that is not in its format: named with the file and the place. */
export class FileFormatError extends Error {
  override readonly name = 'FileFormatError';
}

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
