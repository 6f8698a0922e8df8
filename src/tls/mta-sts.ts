/**
 * MTA-STS (RFC 8461) for direct delivery: the _mta-sts TXT record, the policy
 * fetched over HTTPS from the policy host, and the mx: pattern match. The
 * policy host is resolved through mailedge's resolver and connected to by
 * address (the certificate is still checked for mta-sts.<domain>), with no
 * redirects, a size cap and one deadline.
 */
import { request } from 'node:https';
import { BlockList, isIPv6 } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { Resolver } from '../dns/resolver.js';
import { txtStrings } from '../checks/records.js';
import type { MtaStsPolicy } from './policy-store.js';

/** RFC 8461 section 3.3: policies are small; 64 KiB is generous. */
export const MAX_POLICY_BYTES = 64 * 1024;
/** RFC 8461 section 3.2: max_age is at most 31557600 seconds (one year). */
export const MAX_AGE_LIMIT = 31_557_600;
/**
 * mx: patterns kept at most: real policies name a handful. With the pattern
 * length bound (a host name's 253), this bounds what a policy costs in the
 * store and in TLS-RPT rows, whatever the body (64 KiB) held.
 */
export const MAX_MX_PATTERNS = 64;
const MAX_PATTERN_LENGTH = 253;

export type Discovery = { kind: 'record'; id: string; text: string } | { kind: 'none'; reason: string } | { kind: 'tempfail'; reason: string };

/** RFC 8461 section 3.1: exactly one TXT record starting with v=STSv1, with an id of 1 to 32 letters and digits. */
export async function discover(domain: string, resolver: Resolver, signal: AbortSignal): Promise<Discovery> {
  const name = `_mta-sts.${domain}`;
  const lookup = await resolver.lookup(name, 'TXT', signal);
  if (lookup.kind === 'tempfail') return { kind: 'tempfail', reason: `TXT ${name}: ${lookup.detail}` };
  const records = txtStrings(lookup).filter((text) => /^v=STSv1(;|$)/.test(text.trim()));
  if (records.length === 0) return { kind: 'none', reason: `no v=STSv1 TXT record at ${name}` };
  if (records.length > 1) return { kind: 'none', reason: `${records.length} v=STSv1 TXT records at ${name} (RFC 8461 section 3.1: none is used)` };
  const text = records[0] ?? '';
  const id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(text)?.[1];
  if (!id) return { kind: 'none', reason: `the TXT record at ${name} has no valid id= (${text})` };
  return { kind: 'record', id, text };
}

/** The policy text's fields (RFC 8461 section 3.2), or why it is not a policy. */
export function parsePolicy(text: string): { ok: true; policy: MtaStsPolicy } | { ok: false; reason: string } {
  const fields = new Map<string, string[]>();
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { ok: false, reason: `not a key: value line: ${JSON.stringify(line.slice(0, 80))}` };
    const key = line.slice(0, colon).trim().toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), line.slice(colon + 1).trim()]);
  }
  if (fields.get('version')?.[0] !== 'STSv1') return { ok: false, reason: 'version is not STSv1' };
  const mode = fields.get('mode')?.[0];
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, reason: `mode is ${JSON.stringify(mode ?? null)}, not enforce, testing or none` };
  const maxAgeText = fields.get('max_age')?.[0] ?? '';
  if (!/^\d{1,10}$/.test(maxAgeText)) return { ok: false, reason: `max_age is ${JSON.stringify(maxAgeText)}` };
  const maxAge = Math.min(Number(maxAgeText), MAX_AGE_LIMIT);
  // A pattern longer than any host name matches none: dropping it changes no decision.
  const mx = [...new Set((fields.get('mx') ?? []).map((p) => p.toLowerCase().replace(/\.$/, '')))].filter((p) => p.length > 0 && p.length <= MAX_PATTERN_LENGTH);
  if (mx.length > MAX_MX_PATTERNS) return { ok: false, reason: `${mx.length} mx: patterns (mailedge keeps at most ${MAX_MX_PATTERNS})` };
  if (mode !== 'none' && mx.length === 0) return { ok: false, reason: 'no mx: line' };
  // Only the known fields are kept (RFC 8461 section 3.2: others are ignored), and the text is
  // rebuilt from them: the body may be 64 KiB of extension lines, kept per domain and in TLS-RPT rows.
  return { ok: true, policy: { version: 'STSv1', mode, mx, maxAge, text: canonicalPolicyText(mode, mx, maxAge) } };
}

/** The policy's fields as a policy text (RFC 8461 section 3.2 order, CRLF lines): what is stored and reported. */
export function canonicalPolicyText(mode: 'enforce' | 'testing' | 'none', mx: readonly string[], maxAge: number): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((p) => `mx: ${p}`), `max_age: ${maxAge}`, ''].join('\r\n');
}

/**
 * Addresses a policy host on the Internet never has: unspecified, loopback,
 * private (RFC 1918, RFC 6598 shared, IPv6 unique local), link-local, and
 * IPv4-mapped IPv6 forms of them (BlockList maps those). A recipient domain's
 * owner must not get mailedge to make HTTPS requests into the sender's own
 * network (its admin interfaces, cloud metadata at 169.254.169.254).
 */
const INTERNAL = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  INTERNAL.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const) {
  INTERNAL.addSubnet(network, prefix, 'ipv6');
}

export function internalAddress(address: string): boolean {
  return INTERNAL.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
}

/** RFC 8461 section 4.1: an exact name, or '*.' standing for exactly one leftmost label. */
export function mxMatches(patterns: readonly string[], host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((pattern) => {
    if (!pattern.startsWith('*.')) return pattern === name;
    const suffix = pattern.slice(1);
    const first = name.indexOf('.');
    return first > 0 && name.slice(first) === suffix;
  });
}

export interface FetchSettings {
  resolver: Resolver;
  signal: AbortSignal;
  /** Milliseconds for the lookup, the connection and the body together. */
  timeout: number;
  /** Trust anchors added to the system's (edge.tls.ca). */
  ca: ReadonlyArray<string | Buffer>;
  /** 443 but in tests (edge.tls.mtaSts.port). */
  port: number;
  /**
   * Whether a policy host on a loopback, private or link-local address may be
   * fetched from: only when edge.tls.mtaSts.port is set, which marks a test
   * world (as edge.mxPort does for MX hosts).
   */
  allowInternal: boolean;
  /** The edge's family: the policy host's address records of that family are used. */
  family: 4 | 6;
  localAddress: string | undefined;
}

export type Fetched = { ok: true; policy: MtaStsPolicy } | { ok: false; reason: string; resultType: 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid' };

export async function fetchPolicy(domain: string, settings: FetchSettings): Promise<Fetched> {
  const host = `mta-sts.${domain}`;
  const lookup = await settings.resolver.lookup(host, settings.family === 6 ? 'AAAA' : 'A', settings.signal);
  if (lookup.kind !== 'answer') return { ok: false, reason: `${host} has no IPv${settings.family} address (${lookup.kind})`, resultType: 'sts-policy-fetch-error' };
  const address = lookup.records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [r.address] : []))[0];
  if (!address) return { ok: false, reason: `${host} has no address`, resultType: 'sts-policy-fetch-error' };
  if (!settings.allowInternal && internalAddress(address)) {
    return { ok: false, reason: `${host} resolves to ${address}, a loopback, private or link-local address: a policy host is on the Internet, and mailedge makes no request into its own network for a recipient domain (edge.tls.mtaSts.port, set in tests, allows it)`, resultType: 'sts-policy-fetch-error' };
  }
  const where = `https://${host}${settings.port === 443 ? '' : `:${settings.port}`}/.well-known/mta-sts.txt`;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: Fetched): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const req = request({
      host: address,
      port: settings.port,
      path: '/.well-known/mta-sts.txt',
      method: 'GET',
      servername: host,
      headers: { host: settings.port === 443 ? host : `${host}:${settings.port}`, accept: 'text/plain' },
      ...(settings.localAddress ? { localAddress: settings.localAddress } : {}),
      ...(settings.ca.length > 0 ? { ca: [...rootCertificates, ...settings.ca] } : {}),
      rejectUnauthorized: true,
      agent: false,
    });
    const timer = setTimeout(() => finish({ ok: false, reason: `${where}: no policy within ${settings.timeout} ms`, resultType: 'sts-policy-fetch-error' }), settings.timeout);
    req.on('error', (err: NodeJS.ErrnoException) => {
      const certificate = typeof err.code === 'string' && /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO/.test(err.code);
      finish({ ok: false, reason: `${where}: ${err.message}`, resultType: certificate ? 'sts-webpki-invalid' : 'sts-policy-fetch-error' });
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      // RFC 8461 section 3.3: redirects are not followed.
      if (status !== 200) {
        const location = typeof res.headers.location === 'string' ? ` to ${res.headers.location}` : '';
        finish({ ok: false, reason: `${where}: HTTP ${status}${status >= 300 && status < 400 ? ` (a redirect${location}, which MTA-STS does not follow)` : ''}`, resultType: 'sts-policy-fetch-error' });
        return;
      }
      const type = String(res.headers['content-type'] ?? '');
      if (!/^text\/plain\b/i.test(type)) {
        finish({ ok: false, reason: `${where}: served as ${JSON.stringify(type)}, not text/plain`, resultType: 'sts-policy-invalid' });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_POLICY_BYTES) finish({ ok: false, reason: `${where}: larger than ${MAX_POLICY_BYTES} bytes`, resultType: 'sts-policy-invalid' });
        else chunks.push(chunk);
      });
      res.on('error', (err) => finish({ ok: false, reason: `${where}: ${err.message}`, resultType: 'sts-policy-fetch-error' }));
      res.on('end', () => {
        const parsed = parsePolicy(Buffer.concat(chunks).toString('utf8'));
        finish(parsed.ok ? parsed : { ok: false, reason: `${where}: ${parsed.reason}`, resultType: 'sts-policy-invalid' });
      });
    });
    req.end();
  });
}
