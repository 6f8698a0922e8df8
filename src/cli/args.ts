import { parseArgs, type ParseArgsConfig } from 'node:util';
import { escapeText } from '../text/escape.js';
import { UsageError } from './io.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs with its errors turned into usage errors, keeping parseArgs' whole
 * explanation (some span lines: "Did you forget ...", "use --dns=-XYZ").
 */
export function parseFlags<T extends Options>(args: string[], options: T): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(explain(err, args, options));
  }
}

/**
 * parseArgs quotes the offending argument inside its own multi-line text, so
 * escaping the finished message would either keep an argument's line breaks or
 * flatten parseArgs' own. Parsing again with every argument escaped gets the
 * same complaint worded around safe text: escaping changes no leading dash and
 * no known option name, so the same rule fails.
 */
function explain(err: unknown, args: string[], options: Options): string {
  const original = err instanceof Error ? err.message : 'bad arguments';
  try {
    parseArgs({ args: args.map(escapeText), options, strict: true, allowPositionals: false });
  } catch (again) {
    if (again instanceof Error) return again.message.split('\n').map(escapeText).join('\n');
  }
  return escapeText(original);
}

export const EDGE_FLAGS = {
  'local-address': { type: 'string', multiple: true },
  pool: { type: 'string' },
  'public-address': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  dns: { type: 'string', multiple: true },
  'dns-timeout': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `--from` is an address: without an @ it is a typo (or a null sender, which gets a flag of its own). */
export function requireAddress(flag: string, value: string): void {
  if (!value.includes('@')) throw new UsageError(`${flag}: expected an address such as app@example.com, got ${JSON.stringify(value)}`);
}
