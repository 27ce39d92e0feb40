export type Fields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

interface Sink {
  write(line: string): unknown;
}

/**
 * One JSON object per line: the journal stores each line as one entry, and `journalctl -o cat |
 * jq` reads them back. No timestamp field, because the journal stamps every line itself.
 */
export function jsonLogger(out: Sink, err: Sink): Logger {
  const emit = (sink: Sink, level: string, message: string, fields: Fields = {}) => {
    sink.write(`${JSON.stringify({ level, message, ...serialize(fields) })}\n`);
  };
  return {
    info: (message, fields) => emit(out, 'info', message, fields),
    warn: (message, fields) => emit(err, 'warn', message, fields),
    error: (message, fields) => emit(err, 'error', message, fields),
  };
}

function serialize(fields: Fields): Fields {
  return Object.fromEntries(
    Object.entries(fields).map(([key, value]) => [key, value instanceof Error ? describeError(value) : typeof value === 'bigint' ? value.toString() : value]),
  );
}

/** The error and its causes, outermost first: the cause usually says what really broke. */
export function describeError(error: Error): { name: string; message: string }[] {
  const chain: { name: string; message: string }[] = [];
  let current: unknown = error;
  while (current instanceof Error && chain.length < 8) {
    chain.push({ name: current.name, message: current.message });
    current = current.cause;
  }
  return chain;
}
