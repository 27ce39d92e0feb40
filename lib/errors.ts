/**
 * The project's error hierarchy. Every error carries an operator hint: the message an SRE reads
 * at 3 a.m. must say what broke and what to do about it. Messages never include secrets
 * (client keys, RBAC tokens, response bodies that might echo them are trimmed and scrubbed).
 */
// Each class spells its own name: the Lambda and the node agent are minified, and a class's
// `name` would then read "r" in the logs an operator searches.
export class CompileMastersError extends Error {
  override name = 'CompileMastersError';
  readonly hint: string | undefined;
  /** What happened, without the hint that `message` appends to it. */
  readonly summary: string;

  constructor(message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(options.hint ? `${message} — ${options.hint}` : message, { cause: options.cause });
    this.hint = options.hint;
    this.summary = message;
  }
}

/** Configuration (context keys, environment, config files, secrets' shape) is missing or wrong. */
export class ConfigError extends CompileMastersError {
  override name = 'ConfigError';
}

/**
 * The secret holds no value yet (created empty by the stack, or deleted): an operator's step not
 * taken, not a failure a retry can fix. The controller keeps heartbeating launches meanwhile.
 */
export class SecretMissingError extends ConfigError {
  override name = 'SecretMissingError';

  constructor(
    message: string,
    readonly secretArn: string,
    options: { cause?: unknown; hint?: string },
  ) {
    super(message, options);
  }
}

/** Input from outside (an event, a certname, a CSR) was refused; nothing was changed. */
export class RefusedInputError extends CompileMastersError {
  override name = 'RefusedInputError';
}

export type PuppetServerKind = 'ca' | 'puppetdb' | 'orchestrator' | 'puppetserver';

/** A Puppet-side HTTP API answered with an error, or could not be reached. */
export class PuppetApiError extends CompileMastersError {
  override name = 'PuppetApiError';
  readonly server: PuppetServerKind;
  readonly url: string;
  readonly operation: string;
  readonly status: number | undefined;

  constructor(
    details: { server: PuppetServerKind; url: string; operation: string; status?: number; detail?: string },
    options: { cause?: unknown; hint?: string } = {},
  ) {
    const statusText = details.status === undefined ? 'no answer' : `HTTP ${details.status}`;
    const detail = details.detail ? `: ${details.detail}` : '';
    super(`${details.server} ${details.operation} at ${details.url} failed (${statusText})${detail}`, options);
    this.server = details.server;
    this.url = details.url;
    this.operation = details.operation;
    this.status = details.status;
  }

  /** 5xx and connection failures are worth retrying later; 4xx are not. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500;
  }
}

/** The server could not be reached (or kept answering 5xx) after all retries. */
export class PuppetUnavailableError extends PuppetApiError {
  override name = 'PuppetUnavailableError';
}

/** The server's certificate does not verify against the pinned CA: retrying cannot help. */
export class PuppetTlsError extends PuppetApiError {
  override name = 'PuppetTlsError';
}

/** An AWS API call failed in a way the controller cannot treat as success. */
export class AwsCallError extends CompileMastersError {
  override name = 'AwsCallError';
}
