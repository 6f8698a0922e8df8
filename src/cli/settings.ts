/**
 * Settings from flags, the environment and a .env file, in that order of
 * precedence. The .env file is read, never merged into process.env.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { isIP } from 'node:net';
import { parseServer } from '../dns/servers.js';
import type { EdgeMode, MailedgeOptions } from '../options.js';
import { UsageError, type CliIo } from './io.js';

export function environment(io: CliIo): Record<string, string | undefined> {
  const file = join(io.cwd, '.env');
  const fromFile = existsSync(file) ? parseDotenv(readFileSync(file)) : {};
  return { ...fromFile, ...io.env };
}

export interface EdgeFlags {
  'local-address'?: string;
  'public-address'?: string;
  host?: string;
  port?: string;
  dns?: string[];
  'dns-timeout'?: string;
  mode?: string;
}

function ipFlag(flag: string, value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (isIP(value) === 0) throw new UsageError(`--${flag}: expected an IP address, got ${JSON.stringify(value)}`);
  return value;
}

export function transportOptions(flags: EdgeFlags, env: Record<string, string | undefined>): MailedgeOptions {
  const host = flags.host ?? env.SMTP_HOST;
  const portText = flags.port ?? env.SMTP_PORT;
  let port: number | undefined;
  if (portText !== undefined && portText !== '') {
    port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port: expected 1-65535, got ${JSON.stringify(portText)}`);
  }
  const dnsList = flags.dns && flags.dns.length > 0 ? flags.dns : env.MAILEDGE_DNS ? env.MAILEDGE_DNS.split(/[\s,]+/).filter(Boolean) : undefined;
  for (const server of dnsList ?? []) {
    if (!parseServer(server)) throw new UsageError(`--dns: expected HOST:PORT such as 127.0.0.1:5300 or [::1]:5300, got ${JSON.stringify(server)}`);
  }
  let timeout: number | undefined;
  if (flags['dns-timeout'] !== undefined) {
    timeout = Number(flags['dns-timeout']);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--dns-timeout: expected milliseconds, got ${JSON.stringify(flags['dns-timeout'])}`);
  }
  const modeText = flags.mode ?? env.MAILEDGE_MODE;
  if (modeText !== undefined && modeText !== 'enforce' && modeText !== 'warn') {
    throw new UsageError(`--mode: expected enforce or warn, got ${JSON.stringify(modeText)}`);
  }
  const localAddress = ipFlag('local-address', flags['local-address'] ?? env.MAILEDGE_LOCAL_ADDRESS);
  const publicAddress = ipFlag('public-address', flags['public-address'] ?? env.MAILEDGE_PUBLIC_ADDRESS);
  const user = env.SMTP_USER;
  const pass = env.SMTP_PASS;
  return {
    ...(host ? { host } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(localAddress ? { localAddress } : {}),
    ...(user ? { auth: { user, pass: pass ?? '' } } : {}),
    edge: {
      ...(publicAddress ? { publicAddress } : {}),
      ...(modeText ? { mode: modeText as EdgeMode } : {}),
      dns: {
        ...(dnsList ? { servers: dnsList } : {}),
        ...(timeout !== undefined ? { timeout } : {}),
      },
    },
  };
}
