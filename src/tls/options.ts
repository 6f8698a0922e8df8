/**
 * edge.tls and edge.dns.dnssec: how direct delivery treats TLS. Validated
 * here, named by option, like the rest of src/options.ts.
 */
import { X509Certificate } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import { MemoryPolicyStore, type PolicyStore } from './policy-store.js';
import { systemClock, type Clock } from '../cache.js';

export interface EdgeTlsOptions {
  /**
   * PEM trust anchors added to the system's, for MTA-STS policy fetches and
   * MX certificates: a private CA, or a test CA. Never replaces the system's.
   */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Require a verified certificate for the MX host name on every MX host, policy or not. Default false (opportunistic, RFC 7435). */
  verify?: boolean;
  /** MTA-STS (RFC 8461): false turns it off. Default on. */
  mtaSts?: boolean | MtaStsOptions;
}

export interface MtaStsOptions {
  /** Where policies are kept: default a MemoryPolicyStore; a FilePolicyStore survives restarts. */
  store?: PolicyStore;
  /** Milliseconds for one policy fetch (lookup, HTTPS, body). Default 10000. */
  timeout?: number;
  /** Seconds a policy is kept at most, whatever its max_age. Default 31557600 (RFC 8461's limit). */
  maxAge?: number;
  /** The policy host's port: 443 but in tests. Setting it also allows policy hosts on loopback and private addresses (a test world). */
  port?: number;
}

export type DnssecMode = 'off' | 'trust-ad';

export interface ResolvedTlsOptions {
  ca: Array<string | Buffer>;
  verify: boolean;
  /** `portSet`: edge.tls.mtaSts.port was given, which marks a test world (policy hosts on loopback allowed, src/tls/mta-sts.ts). */
  mtaSts: { store: PolicyStore; timeout: number; maxAge: number; port: number; portSet: boolean } | null;
  /** 'trust-ad': DANE believes the resolver's AD bit (a validating resolver on this host). */
  dnssec: DnssecMode;
}

const TLS_KEYS = new Set(['ca', 'verify', 'mtaSts']);
const STS_KEYS = new Set(['store', 'timeout', 'maxAge', 'port']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `clock` is edge.clock: the policy store's expiry runs on the same time as every other TTL. */
export function resolveTlsOptions(value: unknown, dnssec: unknown, clock: Clock = systemClock): ResolvedTlsOptions {
  if (dnssec !== undefined && dnssec !== 'off' && dnssec !== 'trust-ad') {
    throw new InvalidOptionError('edge.dns.dnssec', `expected 'off' or 'trust-ad', got ${JSON.stringify(dnssec)}`);
  }
  const tls: unknown = value ?? {};
  if (!isRecord(tls)) throw new InvalidOptionError('edge.tls', 'expected an object such as { ca: [pem], mtaSts: true }');
  for (const key of Object.keys(tls)) {
    if (!TLS_KEYS.has(key)) throw new InvalidOptionError(`edge.tls.${key}`, `unknown option (known: ${[...TLS_KEYS].join(', ')})`);
  }
  const caList: unknown[] = tls.ca === undefined ? [] : Array.isArray(tls.ca) ? tls.ca : [tls.ca];
  const ca = caList.map((pem, index) => {
    const option = Array.isArray(tls.ca) ? `edge.tls.ca[${index}]` : 'edge.tls.ca';
    if (typeof pem !== 'string' && !Buffer.isBuffer(pem)) throw new InvalidOptionError(option, 'expected a PEM certificate (string or Buffer)');
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new InvalidOptionError(option, `not a PEM certificate (${(err as Error).message})`);
    }
    return pem;
  });
  if (tls.verify !== undefined && typeof tls.verify !== 'boolean') throw new InvalidOptionError('edge.tls.verify', `expected true or false, got ${JSON.stringify(tls.verify)}`);
  let mtaSts: ResolvedTlsOptions['mtaSts'] = { store: new MemoryPolicyStore({ clock }), timeout: 10_000, maxAge: 31_557_600, port: 443, portSet: false };
  if (tls.mtaSts === false) mtaSts = null;
  else if (tls.mtaSts !== undefined && tls.mtaSts !== true) {
    const sts = tls.mtaSts;
    if (!isRecord(sts)) throw new InvalidOptionError('edge.tls.mtaSts', 'expected true, false or an object such as { store, timeout }');
    for (const key of Object.keys(sts)) {
      if (!STS_KEYS.has(key)) throw new InvalidOptionError(`edge.tls.mtaSts.${key}`, `unknown option (known: ${[...STS_KEYS].join(', ')})`);
    }
    const store = sts.store;
    if (store !== undefined && (typeof (store as PolicyStore).get !== 'function' || typeof (store as PolicyStore).set !== 'function')) {
      throw new InvalidOptionError('edge.tls.mtaSts.store', 'expected an object with get(domain) and set(entry)');
    }
    const number = (key: 'timeout' | 'maxAge' | 'port', max: number, fallback: number): number => {
      const v = sts[key];
      if (v === undefined) return fallback;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new InvalidOptionError(`edge.tls.mtaSts.${key}`, `expected a whole number from 1 to ${max}, got ${JSON.stringify(v)}`);
      return v;
    };
    mtaSts = {
      store: (store as PolicyStore | undefined) ?? new MemoryPolicyStore({ clock }),
      timeout: number('timeout', 2 ** 31 - 1, 10_000),
      maxAge: number('maxAge', 31_557_600, 31_557_600),
      port: number('port', 65_535, 443),
      portSet: sts.port !== undefined,
    };
  }
  return { ca, verify: tls.verify === true, mtaSts, dnssec: (dnssec as DnssecMode | undefined) ?? 'off' };
}
