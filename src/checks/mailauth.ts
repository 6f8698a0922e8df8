/**
 * The parts of mailauth and of the Public Suffix List that the checks use.
 *
 * mailauth's SPF module is loaded on first use, so that importing mailedge does
 * not pay for mailauth's dependency tree (joi, libmime) unless an SPF check
 * actually runs. Its types are mailauth's own (mailauth 4.13 ships declarations);
 * the only narrowing here is of the two places where they are looser or
 * stricter than what mailauth does: the resolver hook also answers MX lookups
 * with { exchange, priority } objects, and an SPF result is one of RFC 7208's
 * seven names, checked at run time before it is given that type.
 */
import type { DNSResolver, SPFOptions, SPFResult } from 'mailauth';
import { getDomain } from 'tldts';

/** What mailauth's resolver hook must return, shaped like node:dns's promises API. */
export type MailauthRecords = string[] | string[][] | Array<{ exchange: string; priority: number }>;

export type MailauthResolver = (name: string, rrtype: string) => Promise<MailauthRecords>;

export type SpfResultName = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';

const SPF_RESULTS: readonly SpfResultName[] = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'];

export interface SpfVerifyOptions extends Omit<SPFOptions, 'resolver' | 'sender' | 'mta'> {
  /** Envelope sender address; mailauth takes the domain after the last "@". */
  sender: string;
  /** Appears in the result's comment; mailauth otherwise uses os.hostname(). */
  mta: string;
  resolver: MailauthResolver;
}

export interface SpfVerifyResult extends Omit<SPFResult, 'status'> {
  status: { result: SpfResultName; comment?: string };
}

type SpfFunction = (options: SPFOptions) => Promise<SPFResult>;

/**
 * A function exported by one of mailauth's modules, loaded on first use and
 * then kept: importing mailedge stays cheap. `load` names the module with a
 * literal import, so bundlers and the CommonJS build see it.
 */
export function lazyMailauth<F>(load: () => Promise<unknown>, exportName: string, modulePath: string): () => Promise<F> {
  let loaded: Promise<F> | undefined;
  return () =>
    (loaded ??= load().then((module) => {
      const exports = module as Record<string, unknown> & { default?: Record<string, unknown> };
      const found = exports[exportName] ?? exports.default?.[exportName];
      if (typeof found !== 'function') throw new Error(`${modulePath} does not export ${exportName}(): is mailauth ~4.13 installed?`);
      return found as F;
    }));
}

const loadSpf = lazyMailauth<SpfFunction>(() => import('mailauth/lib/spf/index.js'), 'spf', 'mailauth/lib/spf');

export function mailauthSpf(): (options: SpfVerifyOptions) => Promise<SpfVerifyResult> {
  return async (options) => {
    const spf = await loadSpf();
    // mailauth's DNSResolver type leaves out the MX objects its SPF code asks for and uses.
    const result = await spf({ ...options, resolver: options.resolver as DNSResolver });
    const name = result.status.result;
    const known = SPF_RESULTS.find((r) => r === name);
    if (!known) throw new Error(`mailauth returned an SPF result outside RFC 7208: ${JSON.stringify(name)}`);
    return { ...result, status: { ...result.status, result: known } };
  };
}

/**
 * The registrable ("organisational", RFC 7489 section 3.2) domain of `name`, by
 * the Public Suffix List (tldts), with private suffixes such as github.io
 * counting as public, as mailauth's own DMARC code does. A name under no listed
 * suffix (.test, .example) falls under the PSL's implicit "*" rule: its last two
 * labels. A name that has no registrable domain (a public suffix itself, or one
 * label) is its own organisational domain. The name's syntax is judged by the
 * checks, not here, so tldts's own hostname validation is off.
 */
export function organisationalDomain(name: string): string {
  const lower = name.toLowerCase();
  return getDomain(lower, { allowIcannDomains: true, allowPrivateDomains: true, validateHostname: false }) ?? lower;
}
