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
  'local-address'?: string[];
  pool?: string;
  'public-address'?: string;
  host?: string;
  port?: string;
  dns?: string[];
  'dns-timeout'?: string;
  mode?: string;
}

/** A setting's value and the name to blame when it is wrong: the flag, or the variable it came from. */
interface Setting {
  value: string | undefined;
  source: string;
}

function setting(flags: EdgeFlags, env: Record<string, string | undefined>, flag: keyof EdgeFlags, variable: string): Setting {
  const fromFlag = flags[flag];
  if (typeof fromFlag === 'string') return { value: fromFlag, source: `--${flag}` };
  return { value: env[variable] === '' ? undefined : env[variable], source: variable };
}

function ipSetting({ value, source }: Setting): string | undefined {
  if (value === undefined) return undefined;
  if (isIP(value) === 0) throw new UsageError(`${source}: expected an IP address, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * The source addresses: --local-address (repeatable), or --pool A,B,...; else
 * MAILEDGE_LOCAL_ADDRESS (comma- or space-separated). Several form a pool.
 */
function localAddresses(flags: EdgeFlags, env: Record<string, string | undefined>): string[] {
  const split = (text: string): string[] => text.split(/[\s,]+/).filter(Boolean);
  const fromFlags = flags['local-address'] ?? [];
  if (fromFlags.length > 0 && flags.pool !== undefined) throw new UsageError('--pool: give the pool with --pool or with several --local-address, not both');
  const [values, source] =
    flags.pool !== undefined
      ? [split(flags.pool), '--pool']
      : fromFlags.length > 0
        ? [fromFlags, '--local-address']
        : [env.MAILEDGE_LOCAL_ADDRESS ? split(env.MAILEDGE_LOCAL_ADDRESS) : [], 'MAILEDGE_LOCAL_ADDRESS'];
  if (flags.pool !== undefined && values.length === 0) throw new UsageError('--pool: expected addresses such as 127.0.0.2,127.0.0.6');
  for (const value of values) ipSetting({ value, source });
  if (new Set(values).size !== values.length) throw new UsageError(`${source}: an address is given twice`);
  return values;
}

export function transportOptions(flags: EdgeFlags, env: Record<string, string | undefined>, { withMode }: { withMode: boolean }): MailedgeOptions {
  const host = setting(flags, env, 'host', 'SMTP_HOST').value;
  const portSetting = setting(flags, env, 'port', 'SMTP_PORT');
  let port: number | undefined;
  if (portSetting.value !== undefined) {
    port = Number(portSetting.value);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${portSetting.source}: expected 1-65535, got ${JSON.stringify(portSetting.value)}`);
  }
  const dnsFromFlags = flags.dns && flags.dns.length > 0;
  const dnsSource = dnsFromFlags ? '--dns' : 'MAILEDGE_DNS';
  const dnsList = dnsFromFlags ? flags.dns : env.MAILEDGE_DNS ? env.MAILEDGE_DNS.split(/[\s,]+/).filter(Boolean) : undefined;
  for (const server of dnsList ?? []) {
    if (!parseServer(server)) throw new UsageError(`${dnsSource}: expected HOST:PORT such as 127.0.0.1:5300 or [::1]:5300, got ${JSON.stringify(server)}`);
  }
  let timeout: number | undefined;
  if (flags['dns-timeout'] !== undefined) {
    timeout = Number(flags['dns-timeout']);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 2 ** 31 - 1) {
      throw new UsageError(`--dns-timeout: expected milliseconds (1 to 2147483647), got ${JSON.stringify(flags['dns-timeout'])}`);
    }
  }
  const mode = withMode ? setting(flags, env, 'mode', 'MAILEDGE_MODE') : { value: undefined, source: '' };
  if (mode.value !== undefined && mode.value !== 'enforce' && mode.value !== 'warn') {
    throw new UsageError(`${mode.source}: expected enforce or warn, got ${JSON.stringify(mode.value)}`);
  }
  const modeText = mode.value;
  const locals = localAddresses(flags, env);
  const localAddress = locals.length === 1 ? locals[0] : undefined;
  const publicAddress = ipSetting(setting(flags, env, 'public-address', 'MAILEDGE_PUBLIC_ADDRESS'));
  if (locals.length > 1 && publicAddress) {
    throw new UsageError('--public-address: one public address cannot stand for a pool of several --local-address; use edge.pool in code for NAT pools');
  }
  const user = env.SMTP_USER;
  const pass = env.SMTP_PASS;
  return {
    ...(host ? { host } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(localAddress ? { localAddress } : {}),
    ...(user ? { auth: { user, pass: pass ?? '' } } : {}),
    edge: {
      ...(publicAddress ? { publicAddress } : {}),
      ...(locals.length > 1 ? { pool: locals.map((address) => ({ localAddress: address })) } : {}),
      ...(modeText ? { mode: modeText as EdgeMode } : {}),
      dns: {
        ...(dnsList ? { servers: dnsList } : {}),
        ...(timeout !== undefined ? { timeout } : {}),
      },
    },
  };
}

/**
 * The options for direct delivery, from options built for a relay: a relay
 * host, port and credentials from flags or the environment (SMTP_HOST,
 * SMTP_USER, SMTP_PASS) do not apply, and MX hosts must never be offered the
 * credentials. `--mx-port` (tests against loopback receivers) sets edge.mxPort.
 */
export function directOptions(options: MailedgeOptions, mxPortFlag: string | undefined): MailedgeOptions {
  const { host: _host, port: _port, auth: _auth, ...rest } = options;
  if (mxPortFlag === undefined) return { ...rest, direct: true };
  const mxPort = Number(mxPortFlag);
  if (!Number.isInteger(mxPort) || mxPort < 1 || mxPort > 65535) throw new UsageError(`--mx-port: expected 1-65535, got ${JSON.stringify(mxPortFlag)}`);
  return { ...rest, direct: true, edge: { ...rest.edge, mxPort } };
}
