import { Cache, systemClock } from './cache.js';
import { KeyObject } from 'node:crypto';
import { formatWithOptions } from 'node:util';
import { escapeText } from './text/escape.js';

/**
 * Secrets never reach logs, reports or errors. A secret is removed where its
 * place is known (an auth field of an object, the payload of an AUTH command,
 * the client line that answers a 334 challenge, a receiver's reply to AUTH,
 * the token fields of an OAuth2 exchange), and anywhere else by substring,
 * but only when it is long enough for that to be safe: replacing a one- or
 * two-character password wherever it occurs would mangle every line and give
 * the password away by where "[redacted]" lands.
 */
export const REDACTED = '[redacted]';

/** Forms of a secret shorter than this are never replaced as substrings. */
export const MIN_SUBSTRING_LENGTH = 8;

const WITHHELD = '[reply withheld: it answers AUTH and may quote the credentials]';
/** What Nodemailer itself writes in place of a secret in the commands it logs. */
const NODEMAILER_MASK = '/* secret */';

/** Keys whose value is a secret wherever they appear: Nodemailer's auth and dkim options, and an OAuth2 token exchange. */
const SECRET_KEYS: ReadonlySet<string> = new Set([
  'pass',
  'password',
  'accessToken',
  'refreshToken',
  'clientSecret',
  'privateKey',
  'passphrase',
  'access_token',
  'refresh_token',
  'client_secret',
  'assertion',
]);
const AUTH_SECRET_KEYS = ['pass', 'password', 'accessToken', 'refreshToken', 'clientSecret', 'privateKey'] as const;

/**
 * Per-message credentials the logger also covers once their message is gone
 * (a late log line); a bound, because a transport may see a new one per
 * message. A message still held by anyone keeps its own covered, past it.
 */
const MAX_MESSAGE_SECRETS = 256;
/** Log objects nest (meta, err, cause); deeper than this is not Nodemailer's and is cut. */
const MAX_DEPTH = 6;

export interface RedactorSources {
  /** Nodemailer's `auth` option (or a message's `auth`). */
  auth?: unknown;
  /** Nodemailer's `dkim` option (or a message's `dkim`). */
  dkim?: unknown;
}

type LogMethod = (...args: unknown[]) => void;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
type Level = (typeof LEVELS)[number];

/**
 * Callable as `redact(text)` (the text form), so code written for the plain
 * function keeps working.
 */
export interface Redactor {
  (text: string): string;
  /** Secrets removed from a line of text: known positions (AUTH payloads, token fields) and long secrets by substring. */
  text(text: string): string;
  /** A redacted copy for logging: secret keys replaced by position, strings redacted, errors copied and redacted. */
  value(value: unknown): unknown;
  /** Redacts an error in place (message, response, stack, cause, rejectedErrors) and returns it. */
  error<E>(err: E): E;
  /** Redacts a send result in place (response, rejectedErrors) and returns it. */
  info<I>(info: I): I;
  /**
   * Wraps a bunyan-style logger (or `true`, Nodemailer's console logger): every
   * call goes through as made (meta, format, ...args), redacted argument by
   * argument and with control characters escaped. `false`/`undefined` pass through.
   */
  logger<T>(logger: T): T;
  /** A redactor that also covers the secrets of one message's own `auth` and `dkim` (Nodemailer's mail.data). */
  withMessage(data: RedactorSources | undefined): Redactor;
}

/** The forms of a set of secrets: what substring redaction replaces, and whether any is too short for it. */
class SecretForms {
  readonly long = new Set<string>();
  /** True when some secret is too short to be replaced by substring, so only positions protect it. */
  short = false;

  addAuth(auth: unknown): void {
    if (!isRecord(auth)) return;
    const user = stringOf(auth.user) ?? '';
    for (const key of AUTH_SECRET_KEYS) {
      for (const secret of secretTexts(auth[key])) this.addSecret(secret, user, key === 'accessToken');
    }
    // Nodemailer's custom auth handlers read credentials from here.
    if (isRecord(auth.credentials)) this.addAuth(auth.credentials);
  }

  addDkim(dkim: unknown): void {
    if (!isRecord(dkim)) return;
    const keys: unknown[] = dkim.keys === undefined ? [dkim] : Array.isArray(dkim.keys) ? dkim.keys : [dkim.keys];
    for (const key of keys) {
      if (!isRecord(key)) continue;
      for (const secret of secretTexts(key.privateKey)) this.addKey(secret);
    }
  }

  /** A password, token or client secret, in clear and in the encodings SMTP AUTH and logs use. */
  addSecret(secret: string, user: string, bearer: boolean): void {
    if (secret.length === 0) return;
    if (secret.length < MIN_SUBSTRING_LENGTH) this.short = true;
    const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
    const forms = [
      secret,
      // AUTH LOGIN: the password alone; AUTH PLAIN: \0user\0pass (Nodemailer omits the authorisation identity; others send it).
      b64(secret),
      b64(`\u0000${user}\u0000${secret}`),
      b64(`${user}\u0000${user}\u0000${secret}`),
      encodeURIComponent(secret),
      JSON.stringify(secret).slice(1, -1),
      escapeText(secret),
    ];
    if (bearer) forms.push(b64(`user=${user}\u0001auth=Bearer ${secret}\u0001\u0001`));
    for (const form of forms) this.addForm(form);
  }

  /** A private key: the whole of it, and each line and the joined body, in case a message quotes a piece. */
  addKey(pem: string): void {
    if (pem.length === 0) return;
    if (pem.length < MIN_SUBSTRING_LENGTH) this.short = true;
    this.addForm(pem);
    const body = pem.split(/\r?\n/).filter((line) => !/^-----/.test(line) && !/^[A-Za-z-]+:/.test(line));
    for (const line of body) this.addForm(line.trim());
    this.addForm(body.map((line) => line.trim()).join(''));
    this.addForm(JSON.stringify(pem).slice(1, -1));
  }

  private addForm(form: string): void {
    if (form.length >= MIN_SUBSTRING_LENGTH) this.long.add(form);
  }

  merge(other: SecretForms): void {
    for (const form of other.long) this.long.add(form);
    this.short ||= other.short;
  }
}

/** Every text a secret value can be sent or shown as: Nodemailer stringifies numbers and Buffers (utf-8). */
function secretTexts(value: unknown, depth = 0): string[] {
  if (value === undefined || value === null || value === false) return [];
  if (typeof value === 'string') return [value];
  if (typeof value === 'number' || typeof value === 'bigint' || value === true) return [String(value)];
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    const buffer = Buffer.from(value);
    return [buffer.toString('utf8'), buffer.toString('latin1')];
  }
  if (value instanceof KeyObject) return keyObjectTexts(value);
  // A dkim key as { key, passphrase }: both are secret.
  if (isRecord(value) && depth === 0) return [...secretTexts(value.key, 1), ...secretTexts(value.passphrase, 1)];
  return [];
}

function keyObjectTexts(key: KeyObject): string[] {
  if (key.type !== 'private') return [];
  const texts: string[] = [];
  for (const encoding of [{ type: 'pkcs8', format: 'pem' }, { type: 'pkcs1', format: 'pem' }, { type: 'sec1', format: 'pem' }] as const) {
    try {
      texts.push(String(key.export(encoding)));
    } catch {
      // not every key type has every encoding
    }
  }
  return texts;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function stringOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** Positional rules that hold in any text: the payload of an AUTH command, the value of an OAuth2 token field. */
// Only where a command starts (a line, or Nodemailer's "C: " prefix): an EHLO reply's "AUTH PLAIN LOGIN" lists mechanisms.
const AUTH_COMMAND = /(?<=^|C: )(AUTH\s+(?:PLAIN|LOGIN|XOAUTH2|XOAUTH|OAUTHBEARER|CRAM-MD5))[ \t]+(?!(?:PLAIN|LOGIN|XOAUTH2|XOAUTH|OAUTHBEARER|CRAM-MD5)\b)([A-Za-z0-9+/=]+)/gim;
const TOKEN_FIELD_JSON = /("(?:access_token|refresh_token|client_secret|assertion|id_token)"\s*:\s*)"(?:[^"\\]|\\.)*"/g;
const TOKEN_FIELD_FORM = /\b((?:access_token|refresh_token|client_secret|assertion)=)[^&\s"']+/g;

function maskedPayload(payload: string): boolean {
  return Buffer.from(payload, 'base64').toString('utf8').includes(NODEMAILER_MASK);
}

/** Every positional rule needs one of these words: most text (a 250 reply) has none and is left at one test. */
const POSITIONAL_WORD = /auth|token|secret|assertion/i;

function redactPositions(text: string): string {
  if (!POSITIONAL_WORD.test(text)) return text;
  return text
    .replace(AUTH_COMMAND, (whole, verb: string, payload: string) => (maskedPayload(payload) ? whole : `${verb} ${NODEMAILER_MASK}`))
    .replace(TOKEN_FIELD_JSON, `$1"${REDACTED}"`)
    .replace(TOKEN_FIELD_FORM, `$1${REDACTED}`);
}

/** Where an SMTP session's AUTH exchange stands, per connection, as seen through its log lines. */
interface AuthState {
  inAuth: boolean;
  lastWas334: boolean;
  /** The mechanism carries a bearer token, which may have been issued at run time (provisioning, refresh). */
  bearer?: boolean;
}

/** Token mechanisms: their secret may be issued at run time, unknown to the redactor, so a reply to them is always withheld. */
const BEARER_AUTH = /^AUTH\s+(?:XOAUTH2|OAUTHBEARER)\b/i;
const MAX_SESSIONS = 1024;
/** Replies only an AUTH command draws (RFC 4954 section 6): 534 mechanism too weak, 535 credentials invalid, 538 encryption required. */
const AUTH_ONLY_REPLY = /^53[458][ -]/;

class RedactorCore {
  private sorted: { long: string[]; short: boolean } | undefined;

  constructor(
    private readonly own: SecretForms,
    /** The transport's redactor, which also keeps recent per-message secrets for its logger. */
    private readonly root: RedactorCore | undefined,
  ) {}

  /** Per-message secret sets seen by this (root) redactor, oldest first, with the messages that brought them. */
  private readonly messageSecrets = new Map<string, { forms: SecretForms; messages: Array<WeakRef<object>> }>();
  /** AUTH exchanges under way, per session: the least recent goes first past MAX_SESSIONS (a dropped connection never finishes). */
  private readonly sessions = new Cache<string, AuthState>({ name: 'redaction auth sessions', max: MAX_SESSIONS, clock: systemClock });

  private forms(): { long: string[]; short: boolean } {
    if (this.sorted === undefined) {
      const all = new SecretForms();
      all.merge(this.own);
      for (const { forms } of this.messageSecrets.values()) all.merge(forms);
      // Longest first, so a form inside a longer one (the password inside its AUTH PLAIN base64) never splits it.
      this.sorted = { long: [...all.long].sort((a, b) => b.length - a.length), short: all.short };
    }
    return this.sorted;
  }

  text(text: string): string {
    let out = redactPositions(text);
    for (const form of this.forms().long) if (out.includes(form)) out = out.split(form).join(REDACTED);
    return out;
  }

  /**
   * A receiver's reply to an AUTH step: kept (minus long secrets) unless a
   * secret could be in it unseen: a short one, or a token issued at run time.
   */
  authReply(reply: string, bearer = false): string {
    if (!bearer && !this.forms().short) return this.text(reply);
    const status = /^\d{3}(?:[ -]\d\.\d{1,3}\.\d{1,3})?/.exec(reply);
    return status ? `${status[0]} ${WITHHELD}` : WITHHELD;
  }

  error<E>(err: E, depth = 0): E {
    if (!isRecord(err) || depth > MAX_DEPTH) return err;
    const record = err as Record<string, unknown>;
    const command = typeof record.command === 'string' ? record.command : '';
    const response = record.response;
    if (typeof response === 'string' && response.length > 0) {
      const safe = /^AUTH\b/i.test(command) ? this.authReply(response, BEARER_AUTH.test(command)) : this.text(response);
      // Nodemailer's message and stack quote the reply: replace it where it stands first.
      for (const key of ['message', 'stack'] as const) {
        const value = record[key];
        if (typeof value === 'string') setProperty(record, key, value.split(response).join(safe));
      }
      setProperty(record, 'response', safe);
    }
    for (const key of ['message', 'stack', 'command', 'reason', 'description']) {
      const value = record[key];
      if (typeof value === 'string') setProperty(record, key, this.text(value));
    }
    if (record.cause !== undefined) this.error(record.cause, depth + 1);
    for (const key of ['errors', 'rejectedErrors']) {
      const list = record[key];
      if (Array.isArray(list)) for (const item of list) this.error(item, depth + 1);
    }
    return err;
  }

  info<I>(info: I): I {
    if (!isRecord(info)) return info;
    const record = info as Record<string, unknown>;
    if (typeof record.response === 'string') record.response = this.text(record.response);
    if (Array.isArray(record.rejectedErrors)) for (const item of record.rejectedErrors) this.error(item);
    return info;
  }

  value(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return escapeText(this.text(value));
    if (typeof value !== 'object' || value === null) return value;
    if (depth >= MAX_DEPTH) return '[…]';
    if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `[${value.length} bytes]`;
    if (value instanceof KeyObject) return REDACTED;
    if (value instanceof Error) return this.errorCopy(value, depth);
    if (Array.isArray(value)) return value.map((item) => this.value(item, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = SECRET_KEYS.has(key) && item !== undefined && item !== null && item !== '' ? REDACTED : this.value(item, depth + 1);
    }
    return out;
  }

  /** A copy, so that logging never changes an error the caller still holds. */
  private errorCopy(err: Error, depth: number): Error {
    const copy = new Error(err.message);
    copy.name = err.name;
    copy.stack = err.stack;
    for (const [key, item] of Object.entries(err)) {
      // err.mail is the caller's message, auth and all: its fields go through the same rules as any logged object.
      (copy as unknown as Record<string, unknown>)[key] = SECRET_KEYS.has(key) ? REDACTED : typeof item === 'string' ? item : this.value(item, depth + 1);
    }
    if (err.cause !== undefined) copy.cause = err.cause instanceof Error ? this.errorCopy(err.cause, depth + 1) : err.cause;
    this.error(copy, depth);
    const fields = copy as unknown as Record<string, unknown>;
    for (const key of ['message', 'response'] as const) {
      const item = fields[key];
      if (typeof item === 'string') setProperty(fields, key, escapeText(item));
    }
    return copy;
  }

  /** One logger call's arguments, redacted as they are. */
  logArgs(args: unknown[]): unknown[] {
    const [first, ...rest] = args;
    // Bunyan's two call forms: (meta, format, ...args) and (format, ...args).
    if (typeof first === 'string' || !isRecord(first) || first instanceof Error) {
      if (first instanceof Error) return [this.value(first), ...rest.map((arg) => this.value(arg))];
      return args.map((arg) => this.value(arg));
    }
    const meta = first;
    const [format, ...more] = rest;
    const line = typeof format === 'string' ? this.lineByPosition(meta, format) : format;
    const quoted = this.quotedReplies(meta);
    const arg = (value: unknown): unknown => this.value(typeof value === 'string' ? quoted(value) : value);
    const shownLine =
      // A multi-line reply arrives as separate lines joined with LF by Nodemailer: those LFs are its, not the server's.
      meta.tnx === 'server' && typeof line === 'string' ? line.split('\n').map((part) => arg(part)).join('\n') : arg(line);
    return [this.value(meta), ...(rest.length === 0 ? [] : [shownLine]), ...more.map(arg)];
  }

  /**
   * Nodemailer logs a failed send as ({ err }, 'Send Error: %s', err.message):
   * the message quotes err.response, whose place the error itself gives, so
   * the reply to AUTH is withheld there as it is in the error.
   */
  private quotedReplies(meta: Record<string, unknown>): (text: string) => string {
    const err = meta.err;
    if (!isRecord(err) || typeof err.response !== 'string' || err.response.length === 0) return (text) => text;
    const response = err.response;
    const command = typeof err.command === 'string' ? err.command : '';
    const safe = /^AUTH\b/i.test(command) ? this.authReply(response, BEARER_AUTH.test(command)) : this.text(response);
    return (text) => text.split(response).join(safe);
  }

  /**
   * Nodemailer logs each SMTP line as the format string, with `tnx` saying
   * who sent it and `sid` which connection: that places AUTH payloads and the
   * receiver's replies to them, whatever the secret looks like.
   */
  private lineByPosition(meta: Record<string, unknown>, line: string): string {
    const tnx = meta.tnx;
    if (tnx !== 'client' && tnx !== 'server') return line;
    const key = `${String(meta.sid ?? '')}|${String(meta.cid ?? '')}|${String(meta.component ?? '')}`;
    const state = this.sessions.get(key);
    if (tnx === 'client') {
      if (/^AUTH\s/i.test(line)) {
        this.session(key, { inAuth: true, lastWas334: false, bearer: BEARER_AUTH.test(line) });
        return redactPositions(line);
      }
      if (state?.inAuth && state.lastWas334) {
        state.lastWas334 = false;
        return line === '' || maskedPayload(line) ? line : NODEMAILER_MASK;
      }
      if (state) this.sessions.delete(key);
      return line;
    }
    // A session the table no longer knows (evicted past MAX_SESSIONS while in AUTH) may still get its AUTH reply:
    // the codes only AUTH draws (RFC 4954: 534, 535, 538) are withheld as a reply to AUTH would be.
    if (!state?.inAuth) return AUTH_ONLY_REPLY.test(line) ? this.authReply(line, true) : line;
    state.lastWas334 = /^334[ -]/.test(line);
    if (state.lastWas334) return line;
    if (/^\d{3} /.test(line)) this.sessions.delete(key);
    return /^2\d\d[ -]/.test(line) ? this.text(line) : this.authReply(line, state.bearer === true);
  }

  private session(key: string, state: AuthState): void {
    this.sessions.set(key, state, Number.POSITIVE_INFINITY);
  }

  logger<T>(logger: T): T {
    if (logger === true) return this.logger(consoleLogger()) as T;
    if (typeof logger !== 'object' || logger === null) return logger;
    const source = logger as Record<string, unknown>;
    const wrapped: Partial<Record<Level, LogMethod>> = {};
    for (const level of LEVELS) {
      const method = source[level];
      if (typeof method !== 'function') continue;
      wrapped[level] = (...args: unknown[]) => {
        // Nodemailer logs from inside socket handlers: a logger that throws there would crash the process.
        try {
          (method as LogMethod).apply(logger, this.logArgs(args));
        } catch {
          // A broken logger loses its line, never a message.
        }
      };
    }
    return wrapped as unknown as T;
  }

  /**
   * Adds one message's secrets for the logger, which cannot tell which message
   * a line belongs to. Past the bound the oldest sets go, but only those whose
   * messages are all gone: a message in flight (or held by the caller) keeps
   * its secrets covered however many others come after it.
   */
  remember(key: string, forms: SecretForms, message: object): void {
    this.sorted = undefined;
    const messages = (this.messageSecrets.get(key)?.messages ?? []).filter((ref) => ref.deref() !== undefined);
    messages.push(new WeakRef(message));
    this.messageSecrets.delete(key);
    this.messageSecrets.set(key, { forms, messages });
    for (const [oldKey, entry] of this.messageSecrets) {
      if (this.messageSecrets.size <= MAX_MESSAGE_SECRETS) break;
      if (entry.messages.every((ref) => ref.deref() === undefined)) this.messageSecrets.delete(oldKey);
    }
  }

  withMessage(data: RedactorSources | undefined): RedactorCore {
    if (!data || (!isRecord(data.auth) && !isRecord(data.dkim))) return this;
    const message = new SecretForms();
    message.addAuth(data.auth);
    message.addDkim(data.dkim);
    if (message.long.size === 0 && !message.short) return this;
    const root = this.root ?? this;
    root.remember([...message.long].sort().join('\u0000') + (message.short ? '\u0000short' : ''), message, data);
    const combined = new SecretForms();
    combined.merge(this.own);
    combined.merge(message);
    return new RedactorCore(combined, root);
  }
}

function setProperty(record: Record<string, unknown>, key: string, value: string): void {
  try {
    record[key] = value;
  } catch {
    // a frozen error: it cannot be changed, and the copies made of it are redacted
  }
}

function toRedactor(core: RedactorCore): Redactor {
  const redactor = ((text: string) => core.text(text)) as Redactor;
  redactor.text = (text) => core.text(text);
  redactor.value = (value) => core.value(value);
  redactor.error = (err) => core.error(err);
  redactor.info = (info) => core.info(info);
  redactor.logger = (logger) => core.logger(logger);
  redactor.withMessage = (data) => {
    const next = core.withMessage(data);
    return next === core ? redactor : toRedactor(next);
  };
  return redactor;
}

/** The redactor for a transport: its `auth` and `dkim` secrets, in every form they take. */
export function createRedactor(sources: RedactorSources = {}): Redactor {
  const forms = new SecretForms();
  forms.addAuth(sources.auth);
  forms.addDkim(sources.dkim);
  return toRedactor(new RedactorCore(forms, undefined));
}

/**
 * Nodemailer's console logger (`logger: true`), rebuilt line for line so that
 * what it prints passes through redaction first: one console.log per line,
 * "[date time] LEVEL [#cid] [sid] C: text".
 */
function consoleLogger(): Record<Level, LogMethod> {
  const width = Math.max(...LEVELS.map((level) => level.length));
  const print = (level: Level) => (meta: unknown, format?: unknown, ...args: unknown[]) => {
    const entry = isRecord(meta) ? meta : {};
    let prefix = entry.tnx === 'server' ? 'S: ' : entry.tnx === 'client' ? 'C: ' : '';
    if (entry.sid) prefix = `[${String(entry.sid)}] ${prefix}`;
    if (entry.cid) prefix = `[#${String(entry.cid)}] ${prefix}`;
    const message = formatWithOptions({ colors: false }, format, ...args);
    for (const line of message.split(/\r?\n/)) {
      console.log('[%s] %s %s', new Date().toISOString().slice(0, 19).replace('T', ' '), level.toUpperCase().padEnd(width), prefix + line);
    }
  };
  return Object.fromEntries(LEVELS.map((level) => [level, print(level)])) as Record<Level, LogMethod>;
}
