/**
 * RFC 1035 section 5 master-file parser, so tests and the demo can be fed the
 * records an operator actually publishes, pasted verbatim.
 *
 * Names come out in the same presentation form wire.ts's decoder produces
 * (absolute, no trailing dot, escapes canonicalised, case kept), so a record
 * parsed here and the same record read back off the wire compare equal.
 */
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import {
  WireFormatError,
  endsWithRootDot,
  ipv6Text,
  labelsToName,
  nameToLabels,
  type RecordData,
  type ResourceRecord,
} from '../dns/wire.js';

export interface ParseZoneOptions {
  /** Origin for relative names until a $ORIGIN line; with or without the trailing dot. */
  origin?: string;
  /** TTL for records without one until a $TTL line. */
  defaultTtl?: number;
}

export class ZoneParseError extends Error {
  override name = 'ZoneParseError';
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

// Used only when neither $TTL, the defaultTtl option nor an earlier explicit TTL says
// otherwise: a pasted snippet without TTLs is still useful test data.
const FALLBACK_TTL = 3600;
const MAX_TTL = 0x7fffffff;
const CLASS_IN = 1;
const SUPPORTED_TYPES = new Set(['A', 'AAAA', 'PTR', 'CNAME', 'NS', 'MX', 'TXT', 'SOA']);
const CLASS_NAMES = new Set(['IN', 'CH', 'CS', 'HS']);

interface Token {
  text: string;
  quoted: boolean;
  line: number;
}

interface Entry {
  line: number;
  /** The line began with whitespace: the owner is the previous record's. */
  blankOwner: boolean;
  tokens: Token[];
}

// ---------------------------------------------------------------- lexer

function isBlank(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r';
}

/**
 * Splits the text into entries (one per record or directive), joining lines inside
 * parentheses. Escapes are kept verbatim in the token text: whether `\.` is label
 * data or a literal dot depends on the field, which only the parser knows.
 */
function tokenize(text: string): Entry[] {
  const entries: Entry[] = [];
  let line = 1;
  let depth = 0;
  let openedAt = 0;
  let entry: Entry | undefined;
  let token: Token | undefined;

  const endToken = (): void => {
    if (token && entry) entry.tokens.push(token);
    token = undefined;
  };
  const endEntry = (): void => {
    endToken();
    if (entry && entry.tokens.length > 0) entries.push(entry);
    entry = undefined;
  };
  const append = (chars: string): void => {
    token ??= { text: '', quoted: false, line };
    token.text += chars;
  };

  let atLineStart = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] ?? '';
    if (atLineStart && depth === 0) {
      endEntry();
      entry = { line, blankOwner: isBlank(ch), tokens: [] };
    }
    atLineStart = false;
    entry ??= { line, blankOwner: false, tokens: [] };

    if (ch === '\n') {
      endToken();
      line++;
      atLineStart = true;
    } else if (isBlank(ch)) {
      endToken();
    } else if (ch === ';') {
      endToken();
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (ch === '(') {
      endToken();
      if (depth === 0) openedAt = line;
      depth++;
    } else if (ch === ')') {
      endToken();
      if (depth === 0) throw new ZoneParseError(`line ${line}: ")" without a matching "("`, line);
      depth--;
    } else if (ch === '"') {
      endToken();
      const start = line;
      let body = '';
      for (i++; ; i++) {
        const c = text[i];
        if (c === undefined || c === '\n') {
          throw new ZoneParseError(`line ${start}: unterminated quoted string`, start);
        }
        if (c === '"') break;
        if (c === '\\') {
          const next = text[i + 1];
          if (next === undefined || next === '\n') {
            throw new ZoneParseError(`line ${start}: unterminated quoted string`, start);
          }
          body += c + next;
          i++;
        } else {
          body += c;
        }
      }
      entry.tokens.push({ text: body, quoted: true, line: start });
    } else if (ch === '\\') {
      const next = text[i + 1];
      if (next === undefined || next === '\n') {
        throw new ZoneParseError(`line ${line}: backslash at end of line`, line);
      }
      append(ch + next);
      i++;
    } else {
      append(ch);
    }
  }
  if (depth > 0) throw new ZoneParseError(`line ${openedAt}: "(" is never closed`, openedAt);
  endEntry();
  return entries;
}

// ---------------------------------------------------------------- fields

function parseTtl(text: string): number | undefined {
  let seconds: number;
  if (/^\d+$/.test(text)) {
    seconds = Number(text);
  } else if (/^(\d+[smhdw])+$/i.test(text)) {
    const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
    seconds = 0;
    for (const [, amount, suffix] of text.matchAll(/(\d+)([smhdw])/gi)) {
      seconds += Number(amount) * (unit[(suffix ?? 's').toLowerCase()] ?? 1);
    }
  } else {
    return undefined;
  }
  return seconds <= MAX_TTL ? seconds : undefined;
}

/** Decodes a <character-string>'s escapes into the latin1 byte string wire.ts uses for TXT. */
function characterString(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') {
      const digits = text.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(digits)) {
        const value = Number(digits);
        if (value > 255) throw new Error(`bad escape \\${digits}`);
        bytes.push(value);
        i += 3;
        continue;
      }
      // Any other escaped character stands for itself (\" \\ \;).
      i++;
    }
    const code = text.codePointAt(i) ?? 0;
    if (code < 0x80) {
      bytes.push(code);
    } else {
      // Raw non-ASCII: its UTF-8 bytes are what a real server would publish.
      const char = String.fromCodePoint(code);
      bytes.push(...Buffer.from(char, 'utf8'));
      i += char.length - 1;
    }
  }
  if (bytes.length > 255) throw new Error(`TXT string of ${bytes.length} octets (at most 255)`);
  return Buffer.from(bytes).toString('latin1');
}

/** Canonical presentation form of an absolute name: what decodeMessage would return for it. */
function canonicalName(name: string): string {
  return labelsToName(nameToLabels(name));
}

// ---------------------------------------------------------------- parser

class ZoneParser {
  private origin: string | undefined;
  private defaultTtl: number | undefined;
  private lastTtl: number | undefined;
  private lastOwner: string | undefined;
  private readonly lines: string[];
  readonly records: ResourceRecord[] = [];

  constructor(
    private readonly text: string,
    options: ParseZoneOptions,
  ) {
    this.lines = text.split('\n');
    if (options.origin !== undefined) {
      // The option is always absolute; accept it with or without the trailing dot.
      const origin = options.origin;
      this.origin = this.absolute(endsWithRootDot(origin) ? origin : `${origin}.`, undefined, 0);
    }
    if (options.defaultTtl !== undefined) {
      if (!Number.isInteger(options.defaultTtl) || options.defaultTtl < 0 || options.defaultTtl > MAX_TTL) {
        throw new RangeError(`defaultTtl must be an integer from 0 to ${MAX_TTL}`);
      }
      this.defaultTtl = options.defaultTtl;
    }
  }

  parse(): ResourceRecord[] {
    for (const entry of tokenize(this.text)) {
      const first = entry.tokens[0];
      if (first && !first.quoted && first.text.startsWith('$')) this.directive(entry, first);
      else this.record(entry);
    }
    return this.records;
  }

  private fail(line: number, message: string): never {
    throw new ZoneParseError(`line ${line}: ${message}`, line);
  }

  private source(entry: Entry): string {
    return (this.lines[entry.line - 1] ?? '').trim();
  }

  /** Resolves a name field against the origin; `base` is the origin in force. */
  private absolute(text: string, base: string | undefined, line: number): string {
    let name: string;
    if (text === '@') {
      if (base === undefined) this.fail(line, '"@" used but no $ORIGIN is set');
      return base;
    }
    if (text === '.') return '.';
    if (endsWithRootDot(text)) {
      name = text.slice(0, -1);
    } else {
      if (base === undefined) this.fail(line, `relative name "${text}" but no $ORIGIN is set`);
      name = base === '.' ? text : `${text}.${base}`;
    }
    try {
      return canonicalName(name);
    } catch (err) {
      if (err instanceof WireFormatError) this.fail(line, `bad name "${text}": ${err.message}`);
      throw err;
    }
  }

  private nameField(token: Token | undefined, entry: Entry, what: string): string {
    if (!token) this.fail(entry.line, `missing ${what} in "${this.source(entry)}"`);
    if (token.quoted) this.fail(token.line, `${what} may not be a quoted string`);
    return this.absolute(token.text, this.origin, token.line);
  }

  private numberField(token: Token | undefined, entry: Entry, what: string, max: number, units = false): number {
    if (!token) this.fail(entry.line, `missing ${what} in "${this.source(entry)}"`);
    const value = units ? parseTtl(token.text) : /^\d+$/.test(token.text) ? Number(token.text) : undefined;
    if (token.quoted || value === undefined || value > max) {
      this.fail(token.line, `bad ${what} "${token.text}"`);
    }
    return value;
  }

  private directive(entry: Entry, first: Token): void {
    const keyword = first.text.toUpperCase();
    const arg = entry.tokens[1];
    if (keyword === '$ORIGIN') {
      if (!arg || arg.quoted) this.fail(first.line, '$ORIGIN needs a name');
      this.origin = this.absolute(arg.text, this.origin, arg.line);
    } else if (keyword === '$TTL') {
      this.defaultTtl = this.numberField(arg, entry, '$TTL value', MAX_TTL, true);
    } else {
      this.fail(first.line, `unsupported directive ${first.text} in "${this.source(entry)}"`);
    }
    const extra = entry.tokens[2];
    if (extra) this.fail(extra.line, `unexpected "${extra.text}" after ${first.text}`);
  }

  private record(entry: Entry): void {
    const tokens = [...entry.tokens];
    let owner: string;
    if (entry.blankOwner) {
      if (this.lastOwner === undefined) this.fail(entry.line, 'record with a blank owner but no previous owner');
      owner = this.lastOwner;
    } else {
      owner = this.nameField(tokens.shift(), entry, 'owner name');
    }

    // TTL and class are both optional and may come in either order (RFC 1035 section 5.1).
    let ttl: number | undefined;
    let classSeen = false;
    for (let n = 0; n < 2; n++) {
      const token = tokens[0];
      if (!token || token.quoted) break;
      const asTtl = ttl === undefined ? parseTtl(token.text) : undefined;
      if (asTtl !== undefined) {
        ttl = asTtl;
      } else if (!classSeen && CLASS_NAMES.has(token.text.toUpperCase())) {
        if (token.text.toUpperCase() !== 'IN') this.fail(token.line, `unsupported class ${token.text}`);
        classSeen = true;
      } else {
        break;
      }
      tokens.shift();
    }

    const typeToken = tokens.shift();
    if (!typeToken) this.fail(entry.line, `missing record type in "${this.source(entry)}"`);
    const type = typeToken.text.toUpperCase();
    if (typeToken.quoted || !SUPPORTED_TYPES.has(type)) {
      this.fail(typeToken.line, `unsupported record type "${typeToken.text}" in "${this.source(entry)}"`);
    }

    const data = this.rdata(type, tokens, entry);
    if (ttl !== undefined) this.lastTtl = ttl;
    const resolvedTtl = ttl ?? this.defaultTtl ?? this.lastTtl ?? FALLBACK_TTL;
    this.lastOwner = owner;
    this.records.push({ name: owner, ttl: resolvedTtl, class: CLASS_IN, ...data });
  }

  private rdata(type: string, tokens: Token[], entry: Entry): RecordData {
    const take = (): Token | undefined => tokens.shift();
    let data: RecordData;
    switch (type) {
      case 'A':
      case 'AAAA': {
        const token = take();
        if (!token) this.fail(entry.line, `missing address in "${this.source(entry)}"`);
        const ok = type === 'A' ? isIPv4(token.text) : isIPv6(token.text) && !token.text.includes('%');
        if (token.quoted || !ok) this.fail(token.line, `bad ${type} address "${token.text}"`);
        data =
          type === 'A'
            ? { type: 'A', address: token.text }
            : // The decoder hands out the compressed lower-case form; match it.
              { type: 'AAAA', address: ipv6Text(token.text) };
        break;
      }
      case 'PTR':
      case 'CNAME':
      case 'NS':
        data = { type, target: this.nameField(take(), entry, 'target name') };
        break;
      case 'MX':
        data = {
          type: 'MX',
          preference: this.numberField(take(), entry, 'MX preference', 0xffff),
          exchange: this.nameField(take(), entry, 'MX exchange'),
        };
        break;
      case 'TXT': {
        if (tokens.length === 0) this.fail(entry.line, `TXT record without text in "${this.source(entry)}"`);
        const strings = tokens.splice(0).map((token) => {
          try {
            return characterString(token.text);
          } catch (err) {
            return this.fail(token.line, `bad TXT string: ${err instanceof Error ? err.message : String(err)}`);
          }
        });
        data = { type: 'TXT', strings };
        break;
      }
      case 'SOA':
        data = {
          type: 'SOA',
          mname: this.nameField(take(), entry, 'SOA MNAME'),
          rname: this.nameField(take(), entry, 'SOA RNAME'),
          serial: this.numberField(take(), entry, 'SOA serial', 0xffffffff),
          refresh: this.numberField(take(), entry, 'SOA refresh', MAX_TTL, true),
          retry: this.numberField(take(), entry, 'SOA retry', MAX_TTL, true),
          expire: this.numberField(take(), entry, 'SOA expire', MAX_TTL, true),
          minimum: this.numberField(take(), entry, 'SOA minimum', MAX_TTL, true),
        };
        break;
      default:
        this.fail(entry.line, `unsupported record type "${type}" in "${this.source(entry)}"`);
    }
    const extra = tokens[0];
    if (extra) this.fail(extra.line, `unexpected "${extra.text}" after ${type} data in "${this.source(entry)}"`);
    return data;
  }
}

/**
 * Parses RFC 1035 master-file text. Supports $ORIGIN, $TTL, @, relative and absolute
 * names, blank owners, comments, parentheses, TTL units and quoted TXT strings, for
 * the types A, AAAA, PTR, CNAME, NS, MX, TXT and SOA. Errors are ZoneParseError and
 * name the line.
 */
export function parseZone(text: string, options: ParseZoneOptions = {}): ResourceRecord[] {
  return new ZoneParser(text, options).parse();
}

/** Reads and parses zone files; each file starts with a fresh $ORIGIN and $TTL. */
export async function loadZoneFiles(paths: string[]): Promise<ResourceRecord[]> {
  const records: ResourceRecord[] = [];
  for (const path of paths) {
    const text = await readFile(path, 'utf8');
    try {
      records.push(...parseZone(text));
    } catch (err) {
      if (err instanceof ZoneParseError) throw new ZoneParseError(`${path}: ${err.message}`, err.line);
      throw err;
    }
  }
  return records;
}
