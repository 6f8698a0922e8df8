/**
 * The identity of this sender for one destination: route → edge address →
 * FCrDNS → EHLO name, as one report. A verdict is reused until the shortest
 * TTL behind it runs out, and concurrent callers share one verification.
 */
import { setMaxListeners } from 'node:events';
import { isIPv6 } from 'node:net';
import { hostname } from 'node:os';
import { Resolver, type Lookup } from './dns/resolver.js';
import { Cache } from './cache.js';
import { digLine } from './checks/evidence.js';
import { checkFcrdns, type FcrdnsVerdict } from './checks/fcrdns.js';
import { checkEhloSyntax } from './checks/ehlo-syntax.js';
import { checkGenericPtr } from './checks/generic-ptr.js';
import { checkDkim } from './checks/dkim.js';
import { checkDnsbl } from './checks/dnsbl.js';
import { IDENTITY_CHECK_IDS, severityOf } from './checks/registry.js';
import { enforcedFailures, isFailing, withSeverity, type CheckResult, type CheckVerdict, type PreflightReport } from './checks/types.js';
import { findEdge, findInternetEdge, type EdgeAddress } from './edge/source.js';
import { resolveRoute, type ResolvedDestination } from './routes/destination.js';
import { usableRequestedName, type ResolvedEdgeOptions } from './options.js';

export interface Identity {
  report: PreflightReport;
  /** Addresses to connect to, in order; empty when the route is unknown. */
  addresses: string[];
  edge: EdgeAddress | null;
  /**
   * The name EHLO will carry: the confirmed name, or in warn mode, when the
   * check failed, the `name` option (if a valid hostname) or the address literal.
   * Null when there is nothing to send as.
   */
  ehloName: string | null;
  /**
   * Every check that can hold a send passed, whatever edge.mode says: the
   * identity is confirmed. This, not report.ok, decides what is renewed and
   * served stale, so warn mode keeps its confirmed name through a DNS outage.
   */
  passed: boolean;
  /** The family mail leaves over: the edge address's; null when there is no edge. */
  family: 4 | 6 | null;
  /**
   * The PTR answer behind each edge address examined: its names (lower-cased;
   * empty for NXDOMAIN or no data), or null when the lookup failed
   * temporarily. A confirmed name may be served stale only while this answer
   * is unobtainable or unchanged.
   */
  ptr: Array<{ address: string; names: string[] | null; refuted: boolean }>;
  /**
   * The destination is a relay on this machine (loopback): the identity is the
   * one the outside world will see, reported and warned about, never a
   * reason to refuse, since the local MTA decides what leaves the machine.
   */
  local: boolean;
}

const ORIGIN_TEXT: Record<EdgeAddress['origin'], string> = {
  publicAddress: 'edge.publicAddress (NAT)',
  localAddress: 'the bound localAddress',
  kernel: 'the kernel\'s source address for the destination',
  internet: 'the kernel\'s source address toward the internet: the relay is on this machine',
};

export function createResolver(options: ResolvedEdgeOptions): Resolver {
  return new Resolver({
    servers: options.servers,
    attemptTimeout: options.attemptTimeout,
    clock: options.clock,
    minTtl: options.minTtl,
    maxTtl: options.maxTtl,
    maxNegativeTtl: options.maxNegativeTtl,
  });
}

/** RFC 8767 section 5 suggests 1.8 s before answering stale. */
const STALE_ANSWER_WAIT_MS = 1_800;

export class EdgeVerifier {
  /** The identity within its TTL, and the one verification under way: the one cache primitive, with one entry. */
  private readonly cache: Cache<'identity', Identity>;
  /** The identity last settled on, fresh or not: whether it is already served stale. */
  private last: Identity | undefined;
  /** The last identity that passed, kept to serve stale through a DNS outage (RFC 8767 spirit). */
  private confirmed: Identity | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: ResolvedEdgeOptions,
    readonly resolver: Resolver = createResolver(options),
  ) {
    this.cache = new Cache({ name: 'identity', max: 1, clock: options.clock });
  }

  /** The cached identity while it is still within its TTL, without any I/O. */
  current(): Identity | undefined {
    return this.cache.get('identity');
  }

  /**
   * The identity, verified now or reused from cache. Never rejects. Once a
   * confirmed identity has expired, sends wait for its re-verification at most
   * a short while (RFC 8767's client response timer); past that, or when the
   * refresh fails only temporarily, they get the identity stale while the
   * retry goes on in the background. A DNS outage never adds its timeout to
   * every send.
   */
  identity(): Promise<Identity> {
    const cached = this.current();
    if (cached) return Promise.resolve(cached);
    const refreshing = this.refresh();
    const confirmed = this.confirmed;
    if (!confirmed || this.options.clock.now() >= this.staleUntil()) return refreshing;
    if (this.last?.report.stale) return Promise.resolve(this.last);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.serveStale(confirmed, 're-verification is still running')), this.staleAnswerWait());
      void refreshing.then((identity) => {
        clearTimeout(timer);
        resolve(identity);
      });
    });
  }

  /** Stops the background retry; the transport calls this from close(). */
  dispose(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private staleUntil(): number {
    return this.confirmed ? this.confirmed.report.expiresAt + this.options.staleFor * 1000 : 0;
  }

  private staleAnswerWait(): number {
    return Math.min(STALE_ANSWER_WAIT_MS, this.options.timeout);
  }

  private refresh(): Promise<Identity> {
    return this.cache.getOrLoad('identity', async () => {
      const settled = this.settle(await this.verify());
      this.last = settled;
      return { value: settled, expiresAt: settled.report.expiresAt };
    });
  }

  /** Decides what a fresh verdict means for the identity in use. */
  private settle(fresh: Identity): Identity {
    // Per family, and only the confirmed identity's own: a confirmed IPv6 identity whose
    // re-check only timed out is still served stale though IPv4 keeps failing for good
    // beside it, but a confirmed IPv4 identity that now fails for good is not kept alive
    // by an IPv6 lookup that merely timed out.
    const confirmed = this.confirmed;
    const confirmedFamily = confirmed?.edge ? (isIPv6(confirmed.edge.address) ? 6 : 4) : undefined;
    const temporaryOnly = familyGroups(fresh.report.checks)
      .filter((group) => confirmedFamily === undefined || group.every((c) => c.family === undefined || c.family === confirmedFamily))
      .some((group) => {
        const holding = group.filter(holdsIdentity);
        return holding.length > 0 && holding.every((c) => c.status === 'temperror');
      });
    // A definitive PTR answer that no longer is the one that confirmed the name ends it at once,
    // even when the new name's own lookups then only time out: the old name is known to be wrong.
    const withdrawn = confirmed !== undefined && ptrChanged(confirmed, fresh);
    if (temporaryOnly && confirmed && !withdrawn && this.options.clock.now() < this.staleUntil()) {
      return this.serveStale(confirmed, failureSummary(fresh));
    }
    // A pass renews the identity; a permanent failure or a changed PTR ends it at once.
    this.confirmed = fresh.passed ? fresh : temporaryOnly && !withdrawn ? this.confirmed : undefined;
    if (this.confirmed !== confirmed) this.dispose();
    return fresh;
  }

  /** The confirmed identity, marked stale until the next retry (every minTtl, never past the window). */
  private serveStale(confirmed: Identity, reason: string): Identity {
    const now = this.options.clock.now();
    const retryAt = Math.min(now + this.options.minTtl * 1000, this.staleUntil());
    const stale: Identity = { ...confirmed, report: { ...confirmed.report, stale: true, expiresAt: retryAt, staleReason: reason } };
    this.last = stale;
    this.cache.set('identity', stale, retryAt);
    clearTimeout(this.retryTimer);
    // Retry without waiting for a send to ask; unref'd, so it never keeps a process alive.
    this.retryTimer = setTimeout(() => void this.refresh(), Math.max(0, retryAt - now)).unref();
    return stale;
  }

  private async verify(): Promise<Identity> {
    const { options } = this;
    const controller = new AbortController();
    // Every lookup of the check listens on this one signal: more than Node's default of ten.
    setMaxListeners(0, controller.signal);
    // One deadline for the whole chain of lookups, enforced here rather than per query.
    const timer = setTimeout(() => controller.abort(), options.timeout);
    try {
      return await this.verifyWithin(controller.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The identity for the family that passes. IPv4 is asked first (A before
   * AAAA, as before families were told apart); only when its edge fails for
   * good, or has no route, is the IPv6 edge checked, so a host whose IPv4 is
   * in order costs no IPv6 lookups at all. A temporary IPv4 failure does not
   * fall back: serving stale or retrying keeps the family already known.
   */
  private async verifyWithin(signal: AbortSignal): Promise<Identity> {
    const { options } = this;
    const fixedEdge = options.publicAddress ?? options.localAddress;
    // The route must be of the checked address's family, or mail leaves from an unchecked one.
    const fixed: 4 | 6 | null = fixedEdge ? (isIPv6(fixedEdge) ? 6 : 4) : options.family === 'auto' ? null : options.family;
    const first = await this.verifyFamily(signal, fixed);
    if (fixed !== null || first.passed || first.family === 6 || options.host === undefined || !permanentlyFailed(first)) return first;
    const second = await this.verifyFamily(signal, 6);
    if (unavailable(second)) return first;
    // A family with no route from here is not a failure of it, only not there.
    if (unavailable(first)) return second;
    return combineFamilies(first, second);
  }

  private async verifyFamily(signal: AbortSignal, preferFamily: 4 | 6 | null): Promise<Identity> {
    const { options } = this;
    const fixedEdge = options.publicAddress ?? options.localAddress;
    const lookups: Lookup[] = [];
    const checks: CheckVerdict[] = [];
    if (options.host === undefined && fixedEdge === undefined) {
      checks.push({
        id: 'edge-address',
        status: 'fail',
        expected: 'a destination host, localAddress or edge.publicAddress',
        actual: 'none given, so the source address cannot be known',
        code: 'EDGE_UNKNOWN',
        hint: 'Give the destination host (--host), or the address to check (--local-address / --public-address).',
        evidence: [],
      });
      return this.finish(checks, lookups, null, null, []);
    }

    // When the edge does not depend on the route, both are asked at once: a cold
    // check then costs two DNS round trips (PTR, then forward), not three.
    const fcrdnsOptions = { maxPtrNames: options.maxPtrNames };
    // The kernel's last edge is asked again beside the route too: the name in use must meet a
    // definitive PTR change even when the route lookup only times out (and usually it is the edge again).
    const inUse = fixedEdge === undefined ? this.confirmed?.edge?.address : undefined;
    const [early, route, previous] = await Promise.all([
      fixedEdge === undefined ? undefined : checkFcrdns(fixedEdge, this.resolver, signal, fcrdnsOptions),
      options.host === undefined ? undefined : resolveRoute(options.host, this.resolver, signal, preferFamily),
      inUse === undefined ? undefined : checkFcrdns(inUse, this.resolver, signal, fcrdnsOptions),
    ]);
    let addresses: string[] = [];
    let destination: string | null = null;
    if (route !== undefined) {
      lookups.push(...route.lookups);
      checks.push(this.destinationCheck(route));
      if (route.kind === 'ok') {
        addresses = route.addresses;
        destination = route.addresses[0] ?? null;
      } else if (!early) {
        const identity = this.finish(checks, lookups, null, null, []);
        if (inUse !== undefined && previous !== undefined) identity.ptr = [ptrAnswer(inUse, previous)];
        return identity;
      }
    }

    const local = route?.kind === 'ok' && this.isLocalHop(route.addresses);
    let edge: EdgeAddress;
    try {
      edge = local ? await findInternetEdge(options, route.family) : await findEdge(options, destination ?? '', options.port);
    } catch (err) {
      checks.push({
        id: 'edge-address',
        status: 'fail',
        expected: `the source address for ${destination}`,
        actual: `no route to ${destination}: ${(err as Error).message}`,
        code: 'EDGE_UNKNOWN',
        hint: 'Set localAddress, or edge.publicAddress when this host is behind NAT.',
        evidence: [],
      });
      if (!local) return this.finish(checks, lookups, null, destination, addresses);
      // A relay on this machine is reached whatever the internet route: the hop is local, the check only informs.
      const loopback: EdgeAddress = { address: await findEdge({}, destination ?? '', options.port).then((e) => e.address, () => destination ?? '127.0.0.1'), origin: 'kernel' };
      return this.finish(checks, lookups, null, destination, addresses, loopback, this.fallbackName(loopback.address, true), true);
    }
    checks.push({
      id: 'edge-address',
      status: 'pass',
      expected: 'the address receivers will see',
      actual: `${edge.address} (${ORIGIN_TEXT[edge.origin]})`,
      code: null,
      hint: null,
      evidence: [
        ...(edge.origin === 'publicAddress' && options.localAddress ? [`bound to ${options.localAddress}, seen as ${edge.address}`] : []),
        ...(local ? [`the relay ${options.host} (${destination}) is on this machine: the address checked is the one the world beyond it sees`] : []),
      ],
    });

    const verdict = await (early ?? (previous !== undefined && inUse === edge.address ? previous : checkFcrdns(edge.address, this.resolver, signal, fcrdnsOptions)));
    checks.push(...verdict.checks);
    lookups.push(...verdict.lookups);
    checks.push(this.ehloCheck(verdict.name));
    const confirmed = verdict.name !== null && !checks.some(isFailing);
    const ehloName = confirmed ? verdict.name : this.fallbackName(edge.address, local);
    // Judged with the identity and cached with it: none of these depends on the message.
    const unconfirmed = confirmed ? [] : verdict.ptrNames.map((p) => p.name);
    checks.push(...(await this.deliverabilityChecks(edge.address, confirmed ? verdict.name : null, ehloName, signal, unconfirmed)));
    const identity = this.finish(checks, lookups, verdict.name, destination, addresses, edge, ehloName, local);
    identity.report.ptrNames = verdict.ptrNames;
    identity.ptr = [ptrAnswer(edge.address, verdict)];
    return identity;
  }

  /**
   * The relay is on this machine (loopback) when the options say so
   * (edge.localRelay: true), or by default when every address of the
   * destination is loopback and no source address is bound.
   */
  private isLocalHop(addresses: readonly string[]): boolean {
    const { localRelay, localAddress } = this.options;
    if (localRelay !== undefined) return localRelay;
    return localAddress === undefined && addresses.length > 0 && addresses.every(isLoopback);
  }

  /**
   * In warn mode the mail goes out unconfirmed: as the `name` option if it is
   * a hostname, else as the address literal (RFC 5321 section 4.1.3). To a
   * relay on this machine, always, and as a fully-qualified name: the `name`
   * option, else this host's name when it is fully qualified, else
   * localhost.localdomain.
   */
  private fallbackName(address: string, local = false): string | null {
    if (local) return usableRequestedName(this.options.requestedName) ?? usableRequestedName(hostname()) ?? 'localhost.localdomain';
    if (this.options.mode !== 'warn') return null;
    const literal = isIPv6(address) ? `[IPv6:${address}]` : `[${address}]`;
    return usableRequestedName(this.options.requestedName) ?? literal;
  }

  /** ehlo-syntax, generic-ptr and dkim: those of edge.checks that need no envelope, within the identity's deadline. */
  private async deliverabilityChecks(address: string, ptrName: string | null, ehloName: string | null, signal: AbortSignal, unconfirmed: readonly string[] = []): Promise<CheckVerdict[]> {
    const { checks, genericPtrAllow, dkim } = this.options;
    return Promise.all([
      ...(checks['ehlo-syntax'] === 'off' ? [] : [checkEhloSyntax(ehloName, unconfirmed)]),
      ...(checks['generic-ptr'] === 'off' ? [] : [checkGenericPtr(address, ptrName, genericPtrAllow, unconfirmed)]),
      ...(checks.dkim === 'off' ? [] : dkim.map((key) => checkDkim(key, this.resolver, signal))),
      // Blocklists (edge.dnsbl): a PBL listing fails where this address meets the final receiver (direct, edge.receiver 'final').
      ...(checks.dnsbl === 'off' ? [] : this.options.dnsbl.map((zone) => checkDnsbl(address, zone, this.options.direct || this.options.receiver === 'final', this.resolver, signal))),
    ]);
  }

  private destinationCheck(route: ResolvedDestination): CheckVerdict {
    const host = route.host;
    const evidence = route.lookups.map((l) => digLine(l));
    if (route.kind === 'unresolved') {
      return {
        id: 'destination',
        status: route.permanent ? 'fail' : 'temperror',
        expected: `an address for ${host}`,
        actual: route.reason,
        code: route.permanent ? 'DEST_UNRESOLVED' : 'DNS_TEMPFAIL',
        hint: route.permanent
          ? `Check the host option, or publish an A/AAAA record for ${host}.`
          : 'Retry later; check that the resolvers in edge.dns.servers are reachable.',
        evidence,
      };
    }
    const first = route.addresses[0] ?? '';
    return {
      id: 'destination',
      status: 'pass',
      expected: `an address for ${host}`,
      actual: route.addresses.length > 1 ? `${route.addresses.join(', ')} (connecting to ${first})` : first,
      code: null,
      hint: null,
      evidence,
    };
  }

  private ehloCheck(name: string | null): CheckVerdict {
    const requested = this.options.requestedName;
    if (name === null) {
      return {
        id: 'ehlo-name',
        status: 'skip',
        expected: 'the confirmed name in EHLO',
        actual: 'no confirmed name to use',
        code: null,
        hint: null,
        evidence: [],
      };
    }
    const overridden = requested !== undefined && requested.toLowerCase().replace(/\.$/, '') !== name;
    return {
      id: 'ehlo-name',
      status: overridden ? 'warn' : 'pass',
      expected: 'the confirmed name in EHLO',
      actual: overridden ? `EHLO ${name} (the name option "${requested}" was replaced)` : `EHLO ${name}`,
      code: overridden ? 'NAME_OVERRIDDEN' : null,
      hint: overridden ? `Drop the name option, or set it to ${name}.` : null,
      evidence: [],
    };
  }

  private finish(
    verdicts: CheckVerdict[],
    lookups: Lookup[],
    name: string | null,
    destination: string | null,
    addresses: string[],
    edge: EdgeAddress | null = null,
    ehloName: string | null = null,
    local = false,
  ): Identity {
    const now = this.options.clock.now();
    // Past a relay on this machine, the identity informs and warns: the local MTA decides what leaves.
    const mode = local ? 'warn' : this.options.mode;
    const checks: CheckResult[] = verdicts.map((v) => withSeverity(v, severityOf(v.id, mode, this.options.checks)));
    const temporary = checks.some((c) => c.status === 'temperror' && holdsIdentity(c));
    const ok = enforcedFailures(checks).length === 0;
    const passed = !checks.some(holdsIdentity);
    const confirmed = !checks.some((c) => IDENTITY_CHECK_IDS.has(c.id) && isFailing(c));
    // A verdict lives as long as the shortest-lived answer behind it. A temporary one is not kept
    // at all, and a failure that no DNS answer backs (no route) is kept only briefly; so is one with
    // a warn-level check still unanswered, which is asked again soon without holding any send.
    const decided = lookups.filter((l) => l.kind !== 'tempfail').map((l) => this.resolver.expiresAt(l));
    const unanswered = checks.some((c) => c.status === 'temperror');
    const ceiling = now + (!unanswered && (passed || decided.length > 0) ? this.options.maxTtl : this.options.minTtl) * 1000;
    const expiresAt = temporary ? now : Math.min(...decided, ceiling);
    return {
      report: {
        ok,
        address: edge?.address ?? null,
        name: confirmed ? name : null,
        destination,
        checks,
        ptrNames: [],
        expiresAt,
        stale: false,
      },
      addresses,
      edge,
      ehloName: edge ? ehloName : null,
      passed,
      family: edge ? (isIPv6(edge.address) ? 6 : 4) : null,
      ptr: [],
      local,
    };
  }
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/** A failure that holds a send: any FCrDNS-side one (whatever the mode), or an enforced deliverability check. */
function holdsIdentity(check: CheckResult): boolean {
  return isFailing(check) && (check.severity === 'enforce' || IDENTITY_CHECK_IDS.has(check.id));
}

/** Checks split by the family they were made for; a single-family report is one group. */
function familyGroups(checks: readonly CheckResult[]): CheckResult[][] {
  const families = new Set(checks.map((c) => c.family));
  return [...families].map((family) => checks.filter((c) => c.family === family));
}

/** Failed, and not because DNS failed to answer: worth trying the other family. */
function permanentlyFailed(identity: Identity): boolean {
  const holding = identity.report.checks.filter(holdsIdentity);
  return holding.length > 0 && !holding.some((c) => c.status === 'temperror');
}

/**
 * The family cannot be used at all: no address of it for the destination, or
 * no route from here. A destination lookup that merely timed out is not that:
 * it stays in the report, so a confirmed identity of this family is served stale.
 */
function unavailable(identity: Identity): boolean {
  return identity.report.checks.some((c) => (c.id === 'destination' || c.id === 'edge-address') && c.status === 'fail');
}

function tagged(checks: readonly CheckResult[], family: 4 | 6, demote: boolean): CheckResult[] {
  return checks.map((c) => ({ ...c, ...(demote ? { severity: 'warn' as const } : {}), family }));
}

/**
 * One identity from the two families' verdicts. When IPv6 passes, it is the
 * identity; IPv4's failure stays in the report at severity 'warn' (it no longer
 * holds the send, but is worth a warning). When neither passes, both families'
 * checks are in the report and the IPv4 edge stays the one warn mode would use.
 */
function combineFamilies(v4: Identity, v6: Identity): Identity {
  const chosen = v6.passed ? v6 : v4;
  const checks = [...tagged(v4.report.checks, 4, v6.passed), ...tagged(v6.report.checks, 6, false)];
  return {
    ...chosen,
    report: {
      ...chosen.report,
      ok: chosen.report.ok,
      checks,
      // The chain drawn is the chosen edge's: its PTR names belong to report.address.
      ptrNames: chosen.report.ptrNames,
      expiresAt: Math.min(v4.report.expiresAt, v6.report.expiresAt),
    },
    ptr: [...v4.ptr, ...v6.ptr],
  };
}

/** What the PTR of an address said, for ptrChanged(): its names (null when unanswered), and whether the chain was refuted for good. */
function ptrAnswer(address: string, verdict: FcrdnsVerdict): Identity['ptr'][number] {
  return {
    address,
    names: verdict.checks[0].status === 'temperror' ? null : verdict.ptrNames.map((p) => p.name.toLowerCase()),
    refuted: verdict.checks.some((c) => c.status === 'fail'),
  };
}

/**
 * The PTR of the confirmed edge address was answered definitively and the
 * answer is not the one that confirmed the name: another name, more or fewer
 * names, or none. An unanswered PTR (timeout, SERVFAIL) changes nothing.
 */
function ptrChanged(confirmed: Identity, fresh: Identity): boolean {
  const address = confirmed.edge?.address;
  const now = fresh.ptr.find((p) => p.address === address);
  if (!now) return false;
  if (now.refuted) return true;
  if (now.names === null) return false;
  const before = confirmed.ptr.find((p) => p.address === address)?.names;
  if (!before) return true;
  return before.length !== now.names.length || before.some((name) => !now.names?.includes(name));
}

function failureSummary(identity: Identity): string {
  return identity.report.checks
    .filter((c) => c.status === 'temperror')
    .map((c) => `${c.id}: ${c.actual}`)
    .join('; ');
}
