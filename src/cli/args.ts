import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './io.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with its errors turned into one-line usage errors naming the flag. */
export function parseFlags<T extends Options>(args: string[], options: T): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0] ?? 'bad arguments';
    throw new UsageError(message);
  }
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
