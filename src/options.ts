/**
 * One options type, validated once at construction; defaults live in one
 * object. A bad value fails here, naming the option, instead of surfacing as
 * a strange DNS or socket error on the first send.
 */
import { createPrivateKey, KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { SMTPPoolOptions, SMTPTransportOptions } from 'nodemailer';
import { InvalidOptionError } from './errors.js';
import { DEFAULT_TTL_BOUNDS, systemClock, type Clock } from './dns/resolver.js';
import { parseServer, systemServers, type DnsServerAddress } from './dns/servers.js';
import { canonicalAddress } from './dns/wire.js';
import { hostnameProblem } from './checks/hostname.js';
import { DEFAULT_SEVERITY, DELIVERABILITY_CHECK_IDS, isDeliverabilityCheckId, type CheckSetting, type DeliverabilityCheckId } from './checks/registry.js';
import type { DkimKeyOptions } from './checks/dkim.js';
// Direct delivery's TLS policies and the blocklist check (issue 12): validated in their own modules.
import { resolveTlsOptions, type DnssecMode, type EdgeTlsOptions, type ResolvedTlsOptions } from './tls/options.js';
import { dnsblZones } from './checks/dnsbl.js';

export type EdgeMode = 'enforce' | 'warn';

export interface EdgeDnsOptions {
  /** Resolvers as 'IP', 'IP:PORT' or '[IPv6]:PORT'. Default: the system's (resolv.conf). */
  servers?: string[];
  /** Milliseconds for the whole edge check, all lookups included. Default 5000. */
  timeout?: number;
  /** Seconds: cached answers live at least this long. Default 30. */
  minTtl?: number;
  /** Seconds: cached answers live at most this long. Default 86400. */
  maxTtl?: number;
  /** Seconds: negative answers (NXDOMAIN, no data) live at most this long. Default 3600. */
  maxNegativeTtl?: number;
  /**
   * Seconds a confirmed identity may still be used after its TTL when
   * re-verification fails only temporarily (timeout, SERVFAIL, REFUSED,
   * unreachable). Default 3600; 0 disables serving stale.
   */
  staleFor?: number;
  /**
   * 'trust-ad': believe the resolver's AD bit (DNSSEC validated), which DANE
   * needs. Only for a validating resolver on this host (or reached over a
   * trusted path). Default 'off': no DANE.
   */
  dnssec?: DnssecMode;
}

export interface EdgeOptions {
  /** The address receivers see when this host is behind NAT. Checked instead of the bound address. */
  publicAddress?: string;
  /** 'enforce' (default) refuses to send when the check fails; 'warn' sends and reports. */
  mode?: EdgeMode;
  dns?: EdgeDnsOptions;
  /** PTR names examined at most. Default 10. */
  maxPtrNames?: number;
  /** Time source for TTLs. Default Date.now. */
  clock?: Clock;
  /** Per deliverability check: 'enforce', 'warn' or 'off'. Unset ids keep their default (DEFAULT_SEVERITY). */
  checks?: Partial<Record<DeliverabilityCheckId, CheckSetting>>;
  /** PTR names the generic-ptr check accepts: exact names, or '.example.com' for every name below it. */
  genericPtrAllow?: string[];
  /**
   * The address family mail may leave over. 'auto' (default): IPv4 first, and
   * IPv6 when the IPv4 edge fails FCrDNS permanently or has no route. 4 or 6:
   * that family only. A fixed localAddress or publicAddress fixes the family.
   */
  family?: EdgeFamily;
  /**
   * Several source addresses, each verified on its own and sending with its own
   * confirmed name. Instead of localAddress / edge.publicAddress.
   */
  pool?: PoolMemberOptions[];
  /** With pool: the same member for the same recipient domain while it passes. Default false (round-robin). */
  poolSticky?: boolean;
  /**
   * With direct: true, the port MX hosts are connected on. Real delivery is
   * always port 25 (the default); this exists so tests can point it at a
   * loopback receiver's port.
   */
  mxPort?: number;
  /**
   * Whether `host` is a relay on this machine (a local Postfix on loopback).
   * Then the identity checked is the one the world beyond it sees
   * (edge.publicAddress, else the kernel's source toward the internet), a
   * failure is a warning rather than a refusal, and EHLO carries the confirmed
   * name or another fully-qualified one. Default: true exactly when every
   * address of `host` is loopback and no localAddress is bound.
   */
  localRelay?: boolean;
  /** Direct delivery's TLS: trust anchors (ca), mandatory verification (verify), MTA-STS (mtaSts). See src/tls/options.ts. */
  tls?: EdgeTlsOptions;
  /** DNS blocklists the edge address is checked against, such as ['zen.spamhaus.org']. Default none. */
  dnsbl?: string[];
  /**
   * Who judges the message's authentication (SPF, DKIM, DMARC) on the
   * address mailedge connects from. 'relay' (default for `host`): a relay
   * that passes the mail on, so SPF is decided downstream; 'final': `host` is
   * the final receiver (an internal server, a partner's MX). Direct delivery
   * is always 'final'.
   */
  receiver?: 'final' | 'relay';
  /** Sender requirements checked per message: 'all' (default, every sender) or 'bulk' (Gmail's and Yahoo's bulk-sender rules). */
  requirements?: 'all' | 'bulk';
}

export interface PoolMemberOptions {
  /** The source address to bind. */
  localAddress: string;
  /** The address receivers see for this member behind NAT. */
  publicAddress?: string;
}

export type EdgeFamily = 'auto' | 4 | 6;

type NodemailerSmtpOptions = Omit<SMTPTransportOptions, 'getSocket' | 'pool'> & Pick<SMTPPoolOptions, 'maxConnections' | 'maxMessages'>;

export interface MailedgeOptions extends NodemailerSmtpOptions {
  /** Pooled connections, as in Nodemailer: any truthy value (true, 1, 'true' from an environment variable). */
  pool?: boolean | number | string;
  edge?: EdgeOptions;
  /** Deliver to each recipient domain's MX hosts instead of a relay `host`. */
  direct?: boolean;
}

/** The Nodemailer SMTP options a route hands to Nodemailer's own transport. */
export type SmtpOptions = Omit<MailedgeOptions, 'edge' | 'direct'>;

export interface ResolvedEdgeOptions {
  publicAddress: string | undefined;
  localAddress: string | undefined;
  family: EdgeFamily;
  /** Undefined when the transport sends from one address. */
  pool: Array<{ localAddress: string; publicAddress: string | undefined }> | undefined;
  poolSticky: boolean;
  direct: boolean;
  /** The port of MX hosts in direct delivery (25 but in tests). */
  mxPort: number;
  /** edge.localRelay as given: undefined means decided from the destination. */
  localRelay: boolean | undefined;
  mode: EdgeMode;
  servers: DnsServerAddress[];
  timeout: number;
  attemptTimeout: number;
  minTtl: number;
  maxTtl: number;
  maxNegativeTtl: number;
  staleFor: number;
  maxPtrNames: number;
  clock: Clock;
  /** Undefined only for a preflight of the edge alone (no destination given). */
  host: string | undefined;
  port: number;
  /** The caller's `name`, when set: compared with the confirmed name. */
  requestedName: string | undefined;
  checks: Record<DeliverabilityCheckId, CheckSetting>;
  genericPtrAllow: string[];
  /** The keys Nodemailer's `dkim` option signs with, for the dkim check; empty when the transport does not sign. */
  dkim: DkimKeyOptions[];
  /** Who judges the message's authentication on the edge address: 'final' with direct: true or edge.receiver 'final'. */
  receiver: 'final' | 'relay';
  requirements: 'all' | 'bulk';
  tls: ResolvedTlsOptions;
  dnsbl: string[];
}

export const DEFAULTS = Object.freeze({
  mode: 'enforce' as EdgeMode,
  timeout: 5_000,
  maxPtrNames: 10,
  staleFor: 3_600,
  ...DEFAULT_TTL_BOUNDS,
});

function isClock(value: unknown): value is Clock {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { now?: unknown }).now === 'function';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Node timers fire at once past this many milliseconds, so no duration may exceed it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function positiveNumber(value: unknown, option: string, max = MAX_TIMER_MS): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new InvalidOptionError(option, `expected a positive number up to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function ipAddress(value: unknown, option: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || isIP(value) === 0) {
    throw new InvalidOptionError(option, `expected an IPv4 or IPv6 address, got ${JSON.stringify(value)}`);
  }
  return canonicalAddress(value);
}

const EDGE_KEYS = new Set(['publicAddress', 'family', 'pool', 'poolSticky', 'mxPort', 'localRelay', 'mode', 'dns', 'maxPtrNames', 'clock', 'checks', 'genericPtrAllow', 'receiver', 'requirements', 'tls', 'dnsbl']);
const CHECK_SETTINGS: readonly CheckSetting[] = ['enforce', 'warn', 'off'];

function checkSettings(value: unknown): Record<DeliverabilityCheckId, CheckSetting> {
  const settings: Record<DeliverabilityCheckId, CheckSetting> = { ...DEFAULT_SEVERITY };
  if (value === undefined) return settings;
  if (!isRecord(value)) throw new InvalidOptionError('edge.checks', `expected an object such as { spf: 'enforce' }, got ${JSON.stringify(value)}`);
  for (const [id, setting] of Object.entries(value)) {
    if (!isDeliverabilityCheckId(id)) {
      throw new InvalidOptionError(`edge.checks.${id}`, `unknown check (known: ${DELIVERABILITY_CHECK_IDS.join(', ')})`);
    }
    if (setting === undefined) continue;
    if (typeof setting !== 'string' || !(CHECK_SETTINGS as readonly string[]).includes(setting)) {
      throw new InvalidOptionError(`edge.checks.${id}`, `expected 'enforce', 'warn' or 'off', got ${JSON.stringify(setting)}`);
    }
    settings[id] = setting as CheckSetting;
  }
  return settings;
}

function allowList(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidOptionError('edge.genericPtrAllow', 'expected an array of host names, such as ["mail.example.com", ".example.com"]');
  return value.map((entry: unknown, index: number) => {
    if (typeof entry !== 'string' || entry.trim().replace(/^\./, '').length === 0) {
      throw new InvalidOptionError(`edge.genericPtrAllow[${index}]`, `expected a host name or .domain, got ${JSON.stringify(entry)}`);
    }
    return entry;
  });
}

/**
 * The signing keys of Nodemailer's `dkim` option, in the form the dkim check
 * reads. Nodemailer validates the option itself; an entry it could not sign
 * with either is left to the check, which reports it as INVALID_OPTION.
 */
export function dkimKeys(value: unknown): DkimKeyOptions[] {
  if (!isRecord(value)) return [];
  // As in Nodemailer, `keys` replaces the single domainName / keySelector / privateKey.
  const keys: unknown[] = value.keys === undefined ? [value] : Array.isArray(value.keys) ? value.keys : [value.keys];
  return keys.flatMap((key) => {
    if (!isRecord(key) || typeof key.domainName !== 'string' || typeof key.keySelector !== 'string' || key.privateKey === undefined) return [];
    return [{ domainName: key.domainName, keySelector: key.keySelector, privateKey: pemOf(key.privateKey) }];
  });
}

/** Nodemailer also takes a KeyObject or { key, passphrase }; the check compares PEM. */
function pemOf(key: unknown): string | Buffer {
  if (typeof key === 'string' || Buffer.isBuffer(key)) return key;
  try {
    const object = key instanceof KeyObject ? key : createPrivateKey(key as Parameters<typeof createPrivateKey>[0]);
    return object.type === 'private' ? object.export({ type: 'pkcs8', format: 'pem' }) : '';
  } catch {
    // Unreadable: the check says so, without ever printing the key.
    return '';
  }
}

const DNS_KEYS = new Set(['servers', 'timeout', 'minTtl', 'maxTtl', 'maxNegativeTtl', 'staleFor', 'dnssec']);

export function resolveEdgeOptions(options: MailedgeOptions): ResolvedEdgeOptions {
  if (!isRecord(options)) throw new InvalidOptionError('options', 'expected an object of SMTP options');
  const edge: unknown = options.edge ?? {};
  if (!isRecord(edge)) throw new InvalidOptionError('edge', 'expected an object');
  for (const key of Object.keys(edge)) {
    if (!EDGE_KEYS.has(key)) throw new InvalidOptionError(`edge.${key}`, `unknown option (known: ${[...EDGE_KEYS].join(', ')})`);
  }
  const dns: unknown = edge.dns ?? {};
  if (!isRecord(dns)) throw new InvalidOptionError('edge.dns', 'expected an object');
  for (const key of Object.keys(dns)) {
    if (!DNS_KEYS.has(key)) throw new InvalidOptionError(`edge.dns.${key}`, `unknown option (known: ${[...DNS_KEYS].join(', ')})`);
  }

  const mode = edge.mode ?? DEFAULTS.mode;
  if (mode !== 'enforce' && mode !== 'warn') {
    throw new InvalidOptionError('edge.mode', `expected 'enforce' or 'warn', got ${JSON.stringify(mode)}`);
  }

  let servers: DnsServerAddress[];
  if (dns.servers === undefined) {
    servers = systemServers();
    if (servers.length === 0) throw new InvalidOptionError('edge.dns.servers', 'not set and the system has no resolvers configured');
  } else {
    if (!Array.isArray(dns.servers) || dns.servers.length === 0) {
      throw new InvalidOptionError('edge.dns.servers', 'expected a non-empty array such as ["127.0.0.1:5300"]');
    }
    servers = dns.servers.map((text: unknown, index: number) => {
      const parsed = typeof text === 'string' ? parseServer(text) : null;
      if (!parsed) {
        throw new InvalidOptionError(`edge.dns.servers[${index}]`, `expected 'IP', 'IP:PORT' or '[IPv6]:PORT', got ${JSON.stringify(text)}`);
      }
      return parsed;
    });
  }

  // Seconds are turned into timer milliseconds, so they share the timer ceiling.
  const maxSeconds = Math.floor(MAX_TIMER_MS / 1000);
  const timeout = positiveNumber(dns.timeout, 'edge.dns.timeout') ?? DEFAULTS.timeout;
  const minTtl = positiveNumber(dns.minTtl, 'edge.dns.minTtl', maxSeconds) ?? DEFAULTS.minTtl;
  const maxTtl = positiveNumber(dns.maxTtl, 'edge.dns.maxTtl', maxSeconds) ?? DEFAULTS.maxTtl;
  const maxNegativeTtl = positiveNumber(dns.maxNegativeTtl, 'edge.dns.maxNegativeTtl', maxSeconds) ?? DEFAULTS.maxNegativeTtl;
  const staleFor = dns.staleFor === 0 ? 0 : (positiveNumber(dns.staleFor, 'edge.dns.staleFor', maxSeconds) ?? DEFAULTS.staleFor);
  if (minTtl > maxTtl) throw new InvalidOptionError('edge.dns.minTtl', `is larger than edge.dns.maxTtl (${minTtl} > ${maxTtl})`);
  if (minTtl > maxNegativeTtl) {
    throw new InvalidOptionError('edge.dns.minTtl', `is larger than edge.dns.maxNegativeTtl (${minTtl} > ${maxNegativeTtl})`);
  }
  const maxPtrNames = positiveNumber(edge.maxPtrNames, 'edge.maxPtrNames') ?? DEFAULTS.maxPtrNames;
  if (!Number.isInteger(maxPtrNames)) throw new InvalidOptionError('edge.maxPtrNames', 'expected a whole number');

  const clock: unknown = edge.clock ?? systemClock;
  if (!isClock(clock)) {
    throw new InvalidOptionError('edge.clock', 'expected an object (or Date) with a now() method returning epoch milliseconds');
  }

  const publicAddress = ipAddress(edge.publicAddress, 'edge.publicAddress');
  const localAddress = ipAddress(options.localAddress, 'localAddress');
  // The check is made for the public address's family, the route for the bound one: they must agree.
  if (publicAddress && localAddress && isIP(publicAddress) !== isIP(localAddress)) {
    throw new InvalidOptionError('edge.publicAddress', `is IPv${isIP(publicAddress)} but localAddress is IPv${isIP(localAddress)}`);
  }

  const family: unknown = edge.family ?? 'auto';
  if (family !== 'auto' && family !== 4 && family !== 6) {
    throw new InvalidOptionError('edge.family', `expected 'auto', 4 or 6, got ${JSON.stringify(family)}`);
  }
  const fixedEdge = publicAddress ?? localAddress;
  // A bound or public address already decides the family: a contradicting one could never be honoured.
  if (family !== 'auto' && fixedEdge && isIP(fixedEdge) !== family) {
    throw new InvalidOptionError('edge.family', `is ${family} but ${publicAddress ? 'edge.publicAddress' : 'localAddress'} is IPv${isIP(fixedEdge)}`);
  }

  const pool = poolMembers(edge.pool, localAddress ?? publicAddress);
  if (edge.poolSticky !== undefined && typeof edge.poolSticky !== 'boolean') {
    throw new InvalidOptionError('edge.poolSticky', `expected true or false, got ${JSON.stringify(edge.poolSticky)}`);
  }
  if (edge.poolSticky === true && pool === undefined) throw new InvalidOptionError('edge.poolSticky', 'only means something with edge.pool');

  const direct = options.direct ?? false;
  if (typeof direct !== 'boolean') throw new InvalidOptionError('direct', `expected true or false, got ${JSON.stringify(direct)}`);
  if (direct) {
    // Each recipient domain names its own destination: a relay, a port or implicit TLS would contradict it.
    for (const key of ['host', 'port', 'secure', 'pool'] as const) {
      if (key === 'pool' ? Boolean(options.pool) : options[key] !== undefined && options[key] !== false) {
        throw new InvalidOptionError(key, `not with direct: true, which connects to each recipient domain's MX hosts on port 25 (STARTTLS when offered)`);
      }
    }
    // Credentials are for one's own relay: offered to every recipient's MX host that advertises AUTH, they would leak.
    if (options.auth !== undefined) throw new InvalidOptionError('auth', 'not with direct: true: MX hosts are other people\'s servers, and would be offered your credentials');
  }
  const mxPort = edge.mxPort === undefined ? 25 : Number(edge.mxPort);
  if (edge.mxPort !== undefined) {
    if (!direct) throw new InvalidOptionError('edge.mxPort', 'only means something with direct: true');
    if (typeof edge.mxPort !== 'number' || !Number.isInteger(mxPort) || mxPort < 1 || mxPort > 65535) {
      throw new InvalidOptionError('edge.mxPort', `expected a port number from 1 to 65535, got ${JSON.stringify(edge.mxPort)}`);
    }
  }

  if (options.host !== undefined && (typeof options.host !== 'string' || options.host.length === 0)) {
    throw new InvalidOptionError('host', `expected a host name or IP address, got ${JSON.stringify(options.host)}`);
  }
  const secure = options.secure === true;
  const portValue = options.port ?? (secure ? 465 : 587);
  const port = Number(portValue);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidOptionError('port', `expected a port number from 1 to 65535, got ${JSON.stringify(options.port)}`);
  }
  if (options.name !== undefined) {
    if (typeof options.name !== 'string') throw new InvalidOptionError('name', 'expected a string');
  }
  refuseBypasses(options);

  if (edge.localRelay !== undefined && typeof edge.localRelay !== 'boolean') {
    throw new InvalidOptionError('edge.localRelay', `expected true or false, got ${JSON.stringify(edge.localRelay)}`);
  }
  if (edge.localRelay === true && direct) throw new InvalidOptionError('edge.localRelay', 'not with direct: true, whose MX hosts are never on this machine');

  const checks = checkSettings(edge.checks);
  const genericPtrAllow = allowList(edge.genericPtrAllow);
  // Message authentication (issue 11): who judges it, and by which sender rules.
  if (edge.receiver !== undefined && edge.receiver !== 'final' && edge.receiver !== 'relay') {
    throw new InvalidOptionError('edge.receiver', `expected 'final' or 'relay', got ${JSON.stringify(edge.receiver)}`);
  }
  if (edge.receiver === 'relay' && direct) throw new InvalidOptionError('edge.receiver', "not 'relay' with direct: true, whose MX hosts are the final receivers");
  if (edge.requirements !== undefined && edge.requirements !== 'all' && edge.requirements !== 'bulk') {
    throw new InvalidOptionError('edge.requirements', `expected 'all' or 'bulk', got ${JSON.stringify(edge.requirements)}`);
  }

  return {
    publicAddress,
    localAddress,
    family,
    pool,
    poolSticky: edge.poolSticky === true,
    direct,
    mxPort,
    localRelay: edge.localRelay as boolean | undefined,
    mode,
    servers,
    timeout,
    // Each server gets a share of the deadline, so a dead first resolver leaves time for the next.
    attemptTimeout: Math.max(100, Math.floor(timeout / (2 * servers.length))),
    minTtl,
    maxTtl,
    maxNegativeTtl,
    staleFor,
    maxPtrNames,
    clock,
    host: options.host,
    port,
    requestedName: options.name,
    checks,
    genericPtrAllow,
    dkim: dkimKeys((options as { dkim?: unknown }).dkim),
    receiver: direct || edge.receiver === 'final' ? 'final' : 'relay',
    requirements: edge.requirements === 'bulk' ? 'bulk' : 'all',
    tls: resolveTlsOptions(edge.tls, dns.dnssec, clock),
    dnsbl: dnsblZones(edge.dnsbl),
  };
}

/**
 * Options that would make Nodemailer use another transport, or another socket,
 * than the one mailedge checked: each is refused, naming it, rather than
 * letting mail leave past the check.
 */
const BYPASSES: Readonly<Record<string, string>> = {
  getSocket: 'mailedge opens the connection itself, so it can bind and check the edge address; a custom socket would change the address receivers see',
  proxy: 'a proxy changes the address receivers see, so the checked edge address would not be the one on the wire',
  sendmail: 'the sendmail transport hands mail to the local MTA, past every check mailedge makes; use host: "localhost" to relay through it over SMTP',
  SES: 'the SES transport sends through the AWS API, past every check mailedge makes; use the SES SMTP endpoint as host',
  streamTransport: 'the stream transport sends nothing; use nodemailer.createTransport for it',
  jsonTransport: 'the JSON transport sends nothing; use nodemailer.createTransport for it',
  transport: 'another transport object would send past every check mailedge makes',
  send: 'a custom transport object would send past every check mailedge makes; mailedge is itself the transport',
  url: 'give url to createTransport, which turns it into host, port, secure and auth',
  service: 'give service to createTransport, which turns it into host, port and secure',
};

function refuseBypasses(options: MailedgeOptions): void {
  const record = options as Record<string, unknown>;
  for (const [key, reason] of Object.entries(BYPASSES)) {
    const value = record[key];
    if (value !== undefined && value !== false && value !== null) throw new InvalidOptionError(key, `not supported: ${reason}`);
  }
}

function poolMembers(value: unknown, single: string | undefined): ResolvedEdgeOptions['pool'] {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidOptionError('edge.pool', 'expected a non-empty array such as [{ localAddress: "203.0.113.7" }]');
  }
  // One source of truth for where mail leaves from: a pool replaces the single address.
  if (single !== undefined) throw new InvalidOptionError('edge.pool', 'give either edge.pool or localAddress / edge.publicAddress, not both');
  const seen = new Set<string>();
  return value.map((entry: unknown, index: number) => {
    const option = `edge.pool[${index}]`;
    if (!isRecord(entry)) throw new InvalidOptionError(option, 'expected an object such as { localAddress: "203.0.113.7", publicAddress?: "198.51.100.7" }');
    for (const key of Object.keys(entry)) {
      if (key !== 'localAddress' && key !== 'publicAddress') throw new InvalidOptionError(`${option}.${key}`, 'unknown option (known: localAddress, publicAddress)');
    }
    const localAddress = ipAddress(entry.localAddress, `${option}.localAddress`);
    if (localAddress === undefined) throw new InvalidOptionError(`${option}.localAddress`, 'required: the address this member binds');
    const publicAddress = ipAddress(entry.publicAddress, `${option}.publicAddress`);
    if (publicAddress && isIP(publicAddress) !== isIP(localAddress)) {
      throw new InvalidOptionError(`${option}.publicAddress`, `is IPv${isIP(publicAddress)} but localAddress is IPv${isIP(localAddress)}`);
    }
    if (seen.has(localAddress)) throw new InvalidOptionError(`${option}.localAddress`, `${localAddress} is already a member`);
    seen.add(localAddress);
    return { localAddress, publicAddress };
  });
}

/** Whether a caller-supplied name could go into EHLO at all (used in warn mode). */
export function usableRequestedName(name: string | undefined): string | undefined {
  return name !== undefined && hostnameProblem(name) === null ? name : undefined;
}

/**
 * The options of one MX host in direct delivery: a relay host on the MX port,
 * checked and connected to like any other; never a relay on this machine,
 * whatever address it has, and always the final receiver of the message.
 */
export function mxHostOptions(options: MailedgeOptions, exchange: string, mxPort: number): MailedgeOptions {
  const { direct: _direct, edge = {}, ...rest } = options;
  const { mxPort: _mxPort, ...edgeRest } = edge;
  return { ...rest, host: exchange, port: mxPort, edge: { ...edgeRest, localRelay: false, receiver: 'final' } };
}
