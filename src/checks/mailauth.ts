/**
 * The parts of mailauth (CommonJS, no type declarations) that the checks use,
 * loaded on first use so that importing mailedge does not pay for mailauth's
 * dependency tree (joi, libmime) unless an SPF or DMARC check actually runs.
 * Each require result is checked at run time before it is given a type, so a
 * changed mailauth fails loudly here instead of returning nonsense verdicts.
 */
import { createRequire } from 'node:module';

/** What mailauth's resolver hook must return, shaped like node:dns's promises API. */
export type MailauthRecords = string[] | string[][] | Array<{ exchange: string; priority: number }>;

export type MailauthResolver = (name: string, rrtype: string) => Promise<MailauthRecords>;

export type SpfResultName = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';

export interface SpfVerifyOptions {
  /** Envelope sender address; mailauth takes the domain after the last "@". */
  sender: string;
  ip: string;
  helo?: string;
  /** Appears in the result's comment; mailauth otherwise uses os.hostname(). */
  mta: string;
  resolver: MailauthResolver;
}

export interface SpfVerifyResult {
  domain: string;
  /** The v=spf1 record of the sender domain, when one was found. */
  rr?: string;
  status: { result: SpfResultName; comment?: string };
  lookups?: { limit: number; count: number; void: number };
}

interface SpfModule {
  spf(options: SpfVerifyOptions): Promise<SpfVerifyResult>;
}

interface TldtsModule {
  getDomain(hostname: string, options?: { allowIcannDomains?: boolean; allowPrivateDomains?: boolean }): string | null;
}

const requireHere = createRequire(import.meta.url);
let spfModule: SpfModule | undefined;
let tldts: TldtsModule | null | undefined;

export function mailauthSpf(): SpfModule['spf'] {
  if (!spfModule) {
    const loaded: unknown = requireHere('mailauth/lib/spf');
    if (!hasFunction(loaded, 'spf')) throw new Error('mailauth/lib/spf does not export spf(): is mailauth ~4.9 installed?');
    spfModule = loaded as SpfModule;
  }
  return spfModule.spf.bind(spfModule);
}

/**
 * The registrable ("organisational", RFC 7489 section 3.2) domain of `name`,
 * by the Public Suffix List copy that mailauth's own DMARC code uses, with the
 * same options (private suffixes such as github.io count as public). Without
 * that list (tldts not found), the last two labels: right for .com and .test,
 * wrong for co.uk, which only costs one extra DMARC lookup.
 */
export function organisationalDomain(name: string): string {
  const lower = name.toLowerCase();
  if (tldts === undefined) {
    try {
      // Resolved from mailauth's location: tldts is its dependency, not ours, and may not be hoisted.
      const loaded: unknown = createRequire(requireHere.resolve('mailauth'))('tldts');
      tldts = hasFunction(loaded, 'getDomain') ? (loaded as TldtsModule) : null;
    } catch {
      tldts = null;
    }
  }
  const found = tldts?.getDomain(lower, { allowIcannDomains: true, allowPrivateDomains: true });
  return found ?? lower.split('.').slice(-2).join('.');
}

function hasFunction(value: unknown, key: string): boolean {
  return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)[key] === 'function';
}
