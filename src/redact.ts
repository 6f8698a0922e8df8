import { formatWithOptions } from 'node:util';
/**
 * Secrets never reach logs, reports or errors. Nodemailer's own errors may
 * quote server responses or commands; everything mailedge prints passes
 * through this first, with the secret and its usual SMTP encodings removed.
 */
const SECRET_KEYS = ['pass', 'accessToken', 'refreshToken', 'clientSecret', 'privateKey'] as const;

export function secretRedactor(auth: unknown): (text: string) => string {
  const secrets = new Set<string>();
  if (typeof auth === 'object' && auth !== null) {
    const record = auth as Record<string, unknown>;
    const user = typeof record.user === 'string' ? record.user : '';
    for (const key of SECRET_KEYS) {
      const value = record[key];
      if (typeof value !== 'string' || value.length === 0) continue;
      secrets.add(value);
      // AUTH LOGIN sends the password alone in base64; AUTH PLAIN sends \0user\0pass.
      secrets.add(Buffer.from(value).toString('base64'));
      secrets.add(Buffer.from(`\u0000${user}\u0000${value}`).toString('base64'));
      secrets.add(encodeURIComponent(value));
    }
  }
  const ordered = [...secrets].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (text) => text;
  return (text) => ordered.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
}

type LogMethod = (...args: unknown[]) => void;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

function redactValue(value: unknown, redact: (text: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 2 || typeof value !== 'object' || value === null) return value;
  if (value instanceof Error) return Object.assign(new Error(redact(value.message)), { code: (value as NodeJS.ErrnoException).code });
  if (Array.isArray(value)) return value.map((v) => redactValue(v, redact, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, redact, depth + 1)]));
}

/** What `logger: true` means to Nodemailer, rebuilt here so that it too passes through redaction. */
function consoleLogger(): Record<(typeof LEVELS)[number], LogMethod> {
  const write = (level: string) => (_meta: unknown, format: unknown, ...args: unknown[]) =>
    console.error(`[${new Date().toISOString()}] ${level.toUpperCase()} ${formatWithOptions({ colors: false }, String(format ?? ''), ...args)}`);
  return Object.fromEntries(LEVELS.map((level) => [level, write(level)])) as Record<(typeof LEVELS)[number], LogMethod>;
}

/**
 * Wraps a caller's bunyan-style logger (or `true`, Nodemailer's console
 * logger) so that nothing logged through it, by mailedge or by Nodemailer
 * underneath, carries a secret.
 */
export function redactingLogger<T>(logger: T, redact: (text: string) => string): T {
  if (logger === true) return redactingLogger(consoleLogger(), redact) as T;
  if (typeof logger !== 'object' || logger === null) return logger;
  const source = logger as Record<string, unknown>;
  const wrapped: Record<string, LogMethod> = {};
  for (const level of LEVELS) {
    const method = source[level];
    if (typeof method !== 'function') continue;
    // The format string is applied before redaction, so a secret split across arguments is caught too.
    wrapped[level] = (meta: unknown, format?: unknown, ...args: unknown[]) =>
      (method as LogMethod).call(
        logger,
        redactValue(meta, redact),
        ...(format === undefined ? [] : [redact(formatWithOptions({ colors: false }, String(format), ...args))]),
      );
  }
  return wrapped as T;
}
