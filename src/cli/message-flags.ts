/**
 * The message-identity flags of `send` and `check` (issue 11): MAIL FROM,
 * DKIM keys, extra headers, per-check severities, sender requirements and the
 * kind of receiver. Each usage error names its flag.
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import type { DkimKeyOptions } from '../checks/dkim.js';
import { isDeliverabilityCheckId, DELIVERABILITY_CHECK_IDS, type CheckSetting, type DeliverabilityCheckId } from '../checks/registry.js';
import type { EdgeOptions } from '../options.js';
import { UsageError } from './io.js';
import { requireAddress } from './args.js';

export const MESSAGE_FLAGS = {
  'envelope-from': { type: 'string' },
  dkim: { type: 'string', multiple: true },
  header: { type: 'string', multiple: true },
  check: { type: 'string', multiple: true },
  requirements: { type: 'string' },
  receiver: { type: 'string' },
} as const;

export interface MessageFlags {
  'envelope-from'?: string;
  dkim?: string[];
  header?: string[];
  check?: string[];
  requirements?: string;
  receiver?: string;
}

export const MESSAGE_USAGE = `  --envelope-from ADDR    MAIL FROM (default: the --from address; '<>' for the null sender)
  --dkim D:S:KEYFILE      sign with DKIM: domain, selector, PEM private key file; repeatable
  --header 'Name: value'  an extra header field; repeatable
  --check ID=SETTING      enforce, warn or off for a check id (as edge.checks); repeatable
  --requirements all|bulk sender requirements: every sender (default) or Gmail's/Yahoo's bulk rules
  --receiver final|relay  who judges SPF/DKIM/DMARC on our address: the host is a relay (default) or the final receiver
`;

/** `null sender` is spelled '<>' (or ''); anything else must be an address. */
export function envelopeFrom(flags: MessageFlags): string | undefined {
  const value = flags['envelope-from'];
  if (value === undefined) return undefined;
  if (value.trim() === '<>' || value.trim() === '') return '';
  requireAddress('--envelope-from', value);
  return value;
}

export function dkimFlags(flags: MessageFlags): DkimKeyOptions[] {
  return (flags.dkim ?? []).map((spec) => {
    const first = spec.indexOf(':');
    const second = first < 0 ? -1 : spec.indexOf(':', first + 1);
    if (first <= 0 || second <= first + 1 || second === spec.length - 1) throw new UsageError(`--dkim: expected DOMAIN:SELECTOR:KEYFILE, got ${JSON.stringify(spec)}`);
    const domainName = spec.slice(0, first);
    const keySelector = spec.slice(first + 1, second);
    const file = spec.slice(second + 1);
    let privateKey: string;
    try {
      privateKey = readFileSync(file, 'utf8');
      createPrivateKey(privateKey);
    } catch (err) {
      // The key's text is never echoed: only the file name and the reason.
      throw new UsageError(`--dkim: cannot read a private key from ${JSON.stringify(file)}: ${err instanceof Error ? err.message.split('\n')[0] : 'unreadable'}`);
    }
    return { domainName, keySelector, privateKey };
  });
}

export function headerFlags(flags: MessageFlags): Record<string, string> | undefined {
  if (!flags.header || flags.header.length === 0) return undefined;
  const headers: Record<string, string> = {};
  for (const line of flags.header) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    if (!/^[!-9;-~]+$/.test(name) || /[\r\n]/.test(line)) throw new UsageError(`--header: expected 'Name: value' on one line, got ${JSON.stringify(line)}`);
    headers[name] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** The edge options these flags set, merged over `edge`. */
export function edgeFromMessageFlags(flags: MessageFlags, edge: EdgeOptions | undefined): EdgeOptions {
  const checks: Partial<Record<DeliverabilityCheckId, CheckSetting>> = { ...edge?.checks };
  for (const entry of flags.check ?? []) {
    const [id, setting, ...rest] = entry.split('=');
    if (id === undefined || setting === undefined || rest.length > 0) throw new UsageError(`--check: expected ID=enforce|warn|off, got ${JSON.stringify(entry)}`);
    if (!isDeliverabilityCheckId(id)) throw new UsageError(`--check: unknown check ${JSON.stringify(id)} (known: ${DELIVERABILITY_CHECK_IDS.join(', ')})`);
    if (setting !== 'enforce' && setting !== 'warn' && setting !== 'off') throw new UsageError(`--check: expected enforce, warn or off for ${id}, got ${JSON.stringify(setting)}`);
    checks[id] = setting;
  }
  const { requirements, receiver } = flags;
  if (requirements !== undefined && requirements !== 'all' && requirements !== 'bulk') throw new UsageError(`--requirements: expected all or bulk, got ${JSON.stringify(requirements)}`);
  if (receiver !== undefined && receiver !== 'final' && receiver !== 'relay') throw new UsageError(`--receiver: expected final or relay, got ${JSON.stringify(receiver)}`);
  return {
    ...edge,
    ...(Object.keys(checks).length > 0 ? { checks } : {}),
    ...(requirements ? { requirements } : {}),
    ...(receiver ? { receiver } : {}),
  };
}
