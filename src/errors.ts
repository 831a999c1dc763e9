// Error classes with their registry error code and HTTP status, and the registry's JSON error body.

/** Error codes of the distribution spec (and errcode's UNAVAILABLE/UNKNOWN) that the gateway itself emits. */
export const registryErrorStatus = {
  UNAUTHORIZED: 401,
  DENIED: 403,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
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

/** A configuration value that is missing or wrong; `key` names the setting at fault. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
  }
}

/** A command-line mistake or a refused operation: printed as a plain message, exit code 1 or 2. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
