/**
 * The checks that depend on the message rather than on the sending host: the
 * envelope sender's domain (spf, sender-mx, dmarc) and each recipient's domain
 * (recipient-null-mx). DNS only: no host is contacted over SMTP, so this is
 * never Sender Address Verification.
 *
 * A send may carry any sender and recipients, so verdicts are cached per check
 * and domain, each for edge.dns.minTtl seconds, and concurrent sends share one
 * lookup per key. The window is the shortest one mailedge keeps any answer
 * for: long enough that a burst to one domain costs one lookup, short enough
 * that a domain fixing its DNS is seen within half a minute by default.
 * Every cache here is bounded (src/cache.ts): a sender mailing ever new
 * domains keeps the most recent ones and forgets the rest.
 */
import { setMaxListeners } from 'node:events';
import addressparser from 'nodemailer/lib/addressparser';
import type { Resolver } from './dns/resolver.js';
import { checkSpf } from './checks/spf.js';
import { checkSenderMx } from './checks/sender-mx.js';
import { checkDmarc } from './checks/dmarc.js';
import { checkRecipientNullMx } from './checks/recipient-null-mx.js';
import { mailDomain } from './checks/records.js';
import { printable } from './checks/hostname.js';
import { RECIPIENT_CHECK_IDS, SENDER_CHECK_IDS, type DeliverabilityCheckId } from './checks/registry.js';
import { enforcedFailures, withSeverity, worthWarning, type CheckResult, type CheckVerdict, type PreflightReport, type Severity } from './checks/types.js';
import type { ResolvedEdgeOptions } from './options.js';
import { Cache } from './cache.js';

/** One envelope from one edge, as a key: sender, recipients, address and EHLO name, one per line (none holds a line break). */
function planKey(from: string | false, to: readonly string[], address: string | null, ehloName: string | null): string {
  return `${from === false ? '' : from}\n${to.length === 1 ? to[0] : to.join('\n')}\n${address ?? ''}\n${ehloName ?? ''}`;
}

/** The same envelope screened before, every verdict behind it still cached: the screening made then, handed back without an await. */
function kept(plan: Plan, now: number): Screening | undefined {
  return plan.screening && plan.screening.expiresAt > now ? plan.screening.screening : undefined;
}

/** The envelope Nodemailer will send with: MAIL FROM (false for the null sender) and every RCPT TO. */
export interface MessageEnvelope {
  from: string | false;
  to: string[];
  [key: string]: unknown;
}

/** What the sender-side checks need to know about the sending host. */
export interface EdgeContext {
  /** The edge address, for SPF; null when it is unknown. */
  address: string | null;
  /** The EHLO name, for SPF's %{h} and the null sender. */
  ehloName: string | null;
}

export interface Screening {
  /** The enforced checks that were awaited: what a refusal's report shows. */
  checks: CheckResult[];
  /** An enforced sender-side check that failed: the whole message is refused. */
  blocking: CheckResult | undefined;
  /** Recipients refused before connecting, each with the check that refused it. */
  refused: Array<{ recipient: string; check: CheckResult }>;
}

export interface ScreenOptions {
  /** False while the identity is served stale: DNS is known to be failing, so sends use only verdicts already cached. */
  wait: boolean;
  /** Called once per (check id, domain, code) per cache period for a result worth a warning. */
  warn: (check: CheckResult) => void;
}

interface Task {
  id: DeliverabilityCheckId;
  /** The domain shown in the report (or the text given, when it is not a domain). */
  domain: string;
  key: string;
  recipients: string[];
  run: (signal: AbortSignal) => Promise<CheckVerdict>;
}

/** One envelope's tasks, and its last screening when that was made wholly from cached verdicts. */
interface Plan {
  tasks: Task[];
  screening?: { screening: Screening; expiresAt: number };
}

export interface EnvelopeCacheLimits {
  /**
   * Verdicts kept at most: about one per recipient domain (plus three for
   * each sender), so the last ten thousand domains mailed, a few MB; an older
   * domain costs one more lookup, most likely answered from the DNS cache.
   */
  verdicts: number;
  /** Warnings remembered at most: forgetting one only lets it be raised again within minTtl. */
  warned: number;
  /**
   * Envelopes (sender, recipients, edge) planned at most: applications send
   * to the same few over and over, and a one-off envelope is cheap to plan again.
   */
  plans: number;
}

export const ENVELOPE_CACHE_LIMITS: Readonly<EnvelopeCacheLimits> = Object.freeze({ verdicts: 10_000, warned: 10_000, plans: 1_000 });

/** The bare addresses of "Name <a@b>" strings, lists and groups, as Nodemailer reads them. */
export function addressesOf(value: string | readonly string[] | undefined): string[] {
  const list = value === undefined ? [] : typeof value === 'string' ? [value] : value;
  return list.flatMap((text) => addressparser(text, { flatten: true }).map((a) => a.address).filter((a) => a.length > 0));
}

/** The report with envelope checks added: ok only while no enforced check fails or is in temperror. */
export function withEnvelopeChecks(report: PreflightReport, checks: readonly CheckResult[]): PreflightReport {
  if (checks.length === 0) return report;
  const all = [...report.checks, ...checks];
  return { ...report, ok: enforcedFailures(all).length === 0, checks: all };
}

export class EnvelopeChecks {
  /** Verdicts by check and domain, each for minTtl seconds; concurrent sends share one check per key. */
  private readonly verdicts: Cache<string, CheckVerdict>;
  /** (check id, domain, code) announced, held for minTtl seconds so it is not announced again. */
  private readonly warned: Cache<string, true>;
  /** Aborted by dispose(): checks still running in the background stop asking DNS. */
  private readonly stop = new AbortController();
  /** Plans by envelope and edge: the same sender and recipients recur send after send. */
  private readonly plans: Cache<string, Plan>;
  /** Whether any envelope check is on; when none is, a send need not even compose the envelope. */
  readonly active: boolean;

  constructor(
    private readonly options: ResolvedEdgeOptions,
    private readonly resolver: Resolver,
    limits: Partial<EnvelopeCacheLimits> = {},
  ) {
    setMaxListeners(0, this.stop.signal);
    const { clock } = options;
    const max = { ...ENVELOPE_CACHE_LIMITS, ...limits };
    this.verdicts = new Cache({ name: 'envelope verdicts', max: max.verdicts, clock });
    this.warned = new Cache({ name: 'envelope warnings', max: max.warned, clock });
    this.plans = new Cache({ name: 'envelope plans', max: max.plans, clock });
    this.active = [...SENDER_CHECK_IDS, ...RECIPIENT_CHECK_IDS].some((id) => options.checks[id] !== 'off');
  }

  /**
   * Every envelope check that is not off, for this sender and these
   * recipients, awaited: what preflight() and `mailedge check` report.
   * `from` undefined leaves the sender side out; '' or '<>' is the null sender.
   */
  async report(from: string | undefined, to: readonly string[], edge: EdgeContext): Promise<CheckResult[]> {
    const tasks = [...(from === undefined ? [] : this.senderTasks(from, edge)), ...this.recipientTasks(to)];
    return Promise.all(tasks.map(async (task) => withSeverity(await this.get(task), this.severity(task.id), task.domain)));
  }

  /**
   * In front of a send. Only enforced checks are awaited (by default only
   * recipient-null-mx); the others run in the background and are announced
   * through `warn`, so they never delay nor fail a send. An enforced check
   * holds mail only on a definite answer: a temperror lets it through,
   * because the relay looks the domains up again when it delivers, and a DNS
   * hiccup here is no reason to hold mail there. A recipient is refused only
   * for a null MX; any other recipient problem is left to the relay.
   */
  screen(envelope: MessageEnvelope, edge: EdgeContext, options: ScreenOptions): Screening | Promise<Screening> {
    const plan = this.planFor(envelope, edge);
    const now = this.options.clock.now();
    return kept(plan, now) ?? this.screenInFull(plan, now, options);
  }

  /**
   * The screening made last time for this envelope from this edge, while every
   * verdict behind it is cached; undefined otherwise (then call screen()).
   * Nothing is built for the common case of the send path.
   */
  screened(from: string | false, to: readonly string[], address: string, ehloName: string): Screening | undefined {
    const plan = this.plans.get(planKey(from, to, address, ehloName));
    return plan && kept(plan, this.options.clock.now());
  }

  private async screenInFull(plan: Plan, now: number, options: ScreenOptions): Promise<Screening> {
    const { tasks } = plan;
    const expiries = tasks.map((task) => this.verdicts.expiresAt(task.key));
    const allCached = expiries.every((expiresAt) => expiresAt !== undefined);
    const awaited: Array<Promise<{ task: Task; result: CheckResult }>> = [];
    for (const task of tasks) {
      const severity = this.severity(task.id);
      if (this.options.checks[task.id] === 'off') continue;
      const cached = this.peek(task.key);
      if (severity === 'enforce' && (options.wait || cached)) {
        awaited.push((cached ? Promise.resolve(cached) : this.get(task)).then((verdict) => ({ task, result: withSeverity(verdict, severity, task.domain) })));
        continue;
      }
      // A throwing warning listener must not become an unhandled rejection of a send that already returned.
      void this.get(task)
        .then((verdict) => this.announce(withSeverity(verdict, severity, task.domain), options.warn))
        .catch(() => undefined);
    }
    const settled = await Promise.all(awaited);
    for (const { result } of settled) this.announce(result, options.warn);
    const senderIds: readonly string[] = SENDER_CHECK_IDS;
    const screening: Screening = {
      checks: settled.map((s) => s.result),
      blocking: settled.find((s) => senderIds.includes(s.task.id) && s.result.status === 'fail')?.result,
      refused: settled.flatMap(({ task, result }) =>
        result.status === 'fail' && result.code === 'RECIPIENT_NULL_MX' ? task.recipients.map((recipient) => ({ recipient, check: result })) : [],
      ),
    };
    // Kept only when nothing was asked of DNS: then it stays right until the first verdict behind it expires.
    if (allCached) plan.screening = { screening, expiresAt: Math.min(...expiries.map((e) => e ?? now)) };
    return screening;
  }

  /** The tasks of one envelope from one edge, remembered; a plan depends on its key alone, so it never expires. */
  private planFor(envelope: MessageEnvelope, edge: EdgeContext): Plan {
    const key = planKey(envelope.from, envelope.to, edge.address, edge.ehloName);
    const known = this.plans.get(key);
    if (known) return known;
    const plan: Plan = { tasks: [...this.senderTasks(envelope.from === false ? '' : envelope.from, edge), ...this.recipientTasks(envelope.to)] };
    this.plans.set(key, plan, Infinity);
    return plan;
  }

  /** Stops the background checks; the transport calls this from close(). */
  dispose(): void {
    this.stop.abort();
  }

  private severity(id: DeliverabilityCheckId): Severity {
    const setting = this.options.checks[id];
    return setting === 'off' ? 'warn' : setting;
  }

  private senderTasks(from: string, edge: EdgeContext): Task[] {
    const nullSender = from.trim() === '' || from.trim() === '<>';
    const parsed = mailDomain(from);
    const domain = nullSender ? (edge.ehloName ?? '<>') : parsed.ok ? parsed.domain : printable(from);
    const tasks: Task[] = [];
    const add = (id: DeliverabilityCheckId, key: string, run: Task['run']): void => {
      if (this.options.checks[id] !== 'off') tasks.push({ id, domain, key: `${id} ${key}`, recipients: [], run });
    };
    // SPF depends on who connects and how it names itself, not only on the domain.
    // Issue 11: through a relay the final receiver judges the relay's address, not ours (edge.receiver).
    add('spf', `${domain} ${edge.address ?? ''} ${edge.ehloName ?? ''}`, (signal) =>
      this.options.receiver === 'relay'
        ? Promise.resolve(notChecked('spf', "decided downstream: the host is a relay, so the final receiver judges the relay's address (set edge.receiver 'final' when the host is the final receiver)"))
        : edge.address === null ? Promise.resolve(notChecked('spf', 'no edge address to evaluate SPF for')) : checkSpf(nullSender ? '' : from, edge.address, edge.ehloName, this.resolver, signal),
    );
    add('sender-mx', domain, (signal) =>
      nullSender ? Promise.resolve(notChecked('sender-mx', 'the null sender (<>) receives no bounces')) : checkSenderMx(from, this.resolver, signal),
    );
    add('dmarc', domain, (signal) =>
      nullSender ? Promise.resolve(notChecked('dmarc', 'the null sender (<>) has no domain')) : checkDmarc(from, this.resolver, signal),
    );
    return tasks;
  }

  private recipientTasks(to: readonly string[]): Task[] {
    if (this.options.checks['recipient-null-mx'] === 'off') return [];
    const byDomain = new Map<string, Task>();
    for (const recipient of to) {
      const parsed = mailDomain(recipient);
      const domain = parsed.ok ? parsed.domain : printable(recipient);
      const task = byDomain.get(domain);
      if (task) {
        task.recipients.push(recipient);
        continue;
      }
      byDomain.set(domain, {
        id: 'recipient-null-mx',
        domain,
        key: `recipient-null-mx ${domain}`,
        recipients: [recipient],
        run: (signal) => checkRecipientNullMx(recipient, this.resolver, signal),
      });
    }
    return [...byDomain.values()];
  }

  /** A verdict still within its cache period, without any I/O. */
  private peek(key: string): CheckVerdict | undefined {
    return this.verdicts.get(key);
  }

  /** Cached for minTtl seconds, single-flight per key. Never rejects. */
  private get(task: Task): Promise<CheckVerdict> {
    return this.verdicts.getOrLoad(task.key, async () => {
      const verdict = await this.run(task);
      // A check cut short by dispose() says nothing about the domain: handed out, not kept.
      return { value: verdict, expiresAt: this.stop.signal.aborted ? 0 : this.options.clock.now() + this.options.minTtl * 1000 };
    });
  }

  /** One deadline per check (edge.dns.timeout), cut short by dispose(). */
  private async run(task: Task): Promise<CheckVerdict> {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    const abort = (): void => controller.abort();
    const timer = setTimeout(abort, this.options.timeout);
    this.stop.signal.addEventListener('abort', abort, { once: true });
    if (this.stop.signal.aborted) abort();
    try {
      return await task.run(controller.signal);
    } catch (err) {
      // The checks answer every DNS outcome themselves; this is a fault in one of them, reported rather than thrown at a send.
      return {
        id: task.id,
        status: 'temperror',
        expected: `the ${task.id} check completes for ${task.domain}`,
        actual: `the check could not complete: ${printable(err instanceof Error ? err.message : String(err))}`,
        code: 'DNS_TEMPFAIL',
        hint: 'Retry later; if it persists, report it as a mailedge bug with this message.',
        evidence: [],
      };
    } finally {
      clearTimeout(timer);
      this.stop.signal.removeEventListener('abort', abort);
    }
  }

  /**
   * A warning for a result that deserves one: a warn status, or a failure of a
   * check set to 'warn'. A temperror is not announced: it says nothing about
   * the domain, and the next period asks again.
   */
  private announce(result: CheckResult, warn: ScreenOptions['warn']): void {
    if (!worthWarning(result)) return;
    const key = `${result.id} ${result.domain ?? ''} ${result.code ?? ''}`;
    if (this.warned.get(key)) return;
    this.warned.set(key, true, this.options.clock.now() + this.options.minTtl * 1000);
    warn(result);
  }
}

function notChecked(id: DeliverabilityCheckId, why: string): CheckVerdict {
  return { id, status: 'skip', expected: 'a domain to check', actual: `not checked: ${why}`, code: null, hint: null, evidence: [] };
}
