/**
 * The message-identity stage of a route: what src/routes/relay.ts calls in
 * front of a hand-over. `prepare` renders the message once (the bytes both
 * verified and sent) and does the edge-independent work; `judge` computes the
 * verdict for the decision the message actually leaves with and refuses, or
 * warns, by the `authentication` check.
 *
 * One authenticator per transport (per resolver): direct delivery's routes to
 * many MX hosts share its DKIM, SPF and DMARC caches.
 */
import { setMaxListeners } from 'node:events';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type { Resolver } from '../dns/resolver.js';
import { Cache } from '../cache.js';
import { EdgeRefusedError, MailedgeError } from '../errors.js';
import { checkAuthentication, checkTransportTls } from '../checks/authentication.js';
import type { Carried } from '../routes/wire-tls.js';
import { withSeverity, worthWarning, type CheckResult, type PreflightReport } from '../checks/types.js';
import type { ResolvedEdgeOptions } from '../options.js';
import { edgeKey, type Decision } from '../decide.js';
import type { MailedgeWarning } from '../routes/route.js';
import { envelopeOf, withEnvelope } from '../routes/mail-view.js';
import { MessageTooLargeError, renderOnce } from './render.js';
import { domainOf } from './headers.js';
import { MessageAuthenticator, type Authentication, type PreparedMessage } from './verdict.js';

export type { Authentication } from './verdict.js';

const authenticators = new WeakMap<Resolver, MessageAuthenticator>();
/**
 * The signal the message's lookups run under. As the envelope checks do, a
 * lookup is bounded by the resolver's own per-attempt timeouts, and the
 * message's abort is honoured around the stage (untilAborted in the route);
 * a timer per message would cost more than the verdict read from cache.
 * Concurrent lookups each listen on it for as long as they run.
 */
const NEVER = new AbortController().signal;
setMaxListeners(0, NEVER);

/** Warnings remembered at most; forgetting one only lets it be raised again. */
const MAX_WARNED = 10_000;
/** Passing verdicts remembered at most (message shapes x edges); forgetting one only judges it again. */
const MAX_PASSED = 10_000;

/** Each message gets its own verdict object: a caller may change what it is handed. */
function copyOf(authentication: Authentication): Authentication {
  return {
    spf: { ...authentication.spf },
    dkim: authentication.dkim.map((signature) => ({ ...signature })),
    dmarc: { ...authentication.dmarc },
    header: authentication.header,
  };
}

export interface PreparedSend {
  /** The message to hand to Nodemailer: the same envelope, with the rendered bytes. */
  outgoing: MailMessage;
  prepared: PreparedMessage;
  /** The verdict last computed, and for which edge: reused when the hand-over decides the same edge. */
  last?: { key: string; authentication: Authentication };
}

export class MessageStage {
  readonly active: boolean;
  private readonly authenticator: MessageAuthenticator;
  private readonly warned: Cache<string, true>;
  /**
   * Verdicts that passed, per message shape and edge: what most messages of a
   * running application get again. Kept until the SPF answers behind them
   * expire; a shape that expires (src/message/verdict.ts) is replaced by one
   * with another id, so its entries are never read again.
   */
  private readonly passed: Cache<string, Authentication>;

  constructor(
    private readonly options: ResolvedEdgeOptions,
    resolver: Resolver,
  ) {
    this.active = options.checks.authentication !== 'off';
    let shared = authenticators.get(resolver);
    if (!shared) {
      shared = new MessageAuthenticator(resolver, options.clock, options.dkim);
      authenticators.set(resolver, shared);
    }
    this.authenticator = shared;
    this.warned = new Cache({ name: 'authentication warnings', max: MAX_WARNED, clock: options.clock });
    this.passed = new Cache({ name: 'authentication passes', max: MAX_PASSED, clock: options.clock });
  }

  /**
   * What the message alone decides; undefined when the check is off.
   *
   * Rendered only when the verdict needs the bytes (src/message/verdict.ts
   * prepareCompiled): the first message of a signature shape and key record
   * answer, a signature mailedge did not make, a header block that a plugin,
   * a transform or a raw message decides. Then the message is rendered once
   * (size-capped) and those bytes are verified and sent: `outgoing` carries
   * them, so a stream attachment is read and an href fetched only once.
   * Otherwise the verdict comes from the compiled headers and Nodemailer
   * streams the message while sending, as raw Nodemailer does.
   *
   * The original `mail` is rendered, never a view of it with another envelope
   * (`outgoing`): Nodemailer adds Date, Message-ID and MIME-Version only when
   * the node it renders is its own root, which a view (Object.create of the
   * node) is not.
   */
  prepare(mail: MailMessage, outgoing: MailMessage, report: PreflightReport): PreparedSend | undefined | Promise<PreparedSend | undefined> {
    if (!this.active) return undefined;
    const compiled = this.authenticator.prepareCompiled(mail, NEVER);
    if (compiled === undefined) return this.render(mail, outgoing, report);
    // A shape judged before: no await, so the hand-over stays as cheap as raw Nodemailer's.
    if (!(compiled instanceof Promise)) return { outgoing, prepared: compiled };
    return compiled.then((prepared) => (prepared ? { outgoing, prepared } : this.render(mail, outgoing, report)));
  }

  private async render(mail: MailMessage, outgoing: MailMessage, report: PreflightReport): Promise<PreparedSend> {
    try {
      let raw: Buffer;
      try {
        raw = await renderOnce(mail);
      } catch (err) {
        if (err instanceof MessageTooLargeError) throw new EdgeRefusedError(report, tooLarge(err.limit), { mail: mail.data });
        throw err;
      }
      const prepared = await this.authenticator.prepare(mail, raw, NEVER);
      return { outgoing: withEnvelope(mail, envelopeOf(outgoing), raw), prepared };
    } finally {
      // Whatever became of it, the messages of its shape that wait for this one go on.
      this.authenticator.releaseClaim(mail);
    }
  }

  /**
   * The verdict for the edge this message leaves with; throws the refusal
   * (EdgeRefusedError with `authentication`) when the check, enforced, fails.
   */
  judge(send: PreparedSend, decision: Decision, report: PreflightReport, mail: unknown, warn: (warning: MailedgeWarning) => void): Authentication | Promise<Authentication> {
    const key = edgeKey(decision);
    if (send.last?.key === key) return send.last.authentication;
    // A message of a shape that passed from this edge before, within the TTLs behind that verdict: the same verdict.
    const shape = send.prepared.shape;
    const passed = shape && this.passed.get(`${shape.id}|${key}`);
    if (passed) {
      const authentication = copyOf(passed);
      send.last = { key, authentication };
      return authentication;
    }
    return this.judgeInFull(send, key, decision, report, mail, warn);
  }

  private async judgeInFull(send: PreparedSend, key: string, decision: Decision, report: PreflightReport, mail: unknown, warn: (warning: MailedgeWarning) => void): Promise<Authentication> {
    const judgement = await this.authenticator.judge(send.prepared, { address: decision.address, name: decision.name }, this.options.receiver, NEVER);
    const keys = send.prepared.headers.get('dkim-signature').length > 0 ? send.prepared.keys : [];
    const mailFrom = send.prepared.mailFrom;
    const dmarcReportedElsewhere = this.options.checks.dmarc !== 'off' && mailFrom !== false && send.prepared.fromDomain === domainOf(mailFrom);
    const verdict = checkAuthentication(judgement, {
      requirements: this.options.requirements,
      keys,
      dmarcReportedElsewhere,
      dkimReportedElsewhere: this.options.checks.dkim !== 'off' && !(mail as { dkim?: unknown } | undefined)?.dkim,
      passEvidence: false,
    });
    const { authentication } = judgement;
    // The common case: nothing to refuse or warn about, and nothing to format.
    if (verdict.status === 'pass') {
      send.last = { key, authentication };
      const shape = send.prepared.shape;
      if (shape) this.passed.set(`${shape.id}|${key}`, copyOf(authentication), this.authenticator.spfExpiresAt(judgement));
      return authentication;
    }
    const check = withSeverity(verdict, this.options.checks.authentication === 'warn' ? 'warn' : 'enforce', send.prepared.fromDomain);
    if (check.severity === 'enforce' && check.status === 'fail') {
      throw Object.assign(new EdgeRefusedError({ ...report, ok: false, checks: [...report.checks, check] }, check, { mail }), { authentication });
    }
    if (worthWarning(check)) this.warnOnce(check, report, warn);
    send.last = { key, authentication };
    return authentication;
  }

  /**
   * The requirement "TLS to the receiver when it offers STARTTLS", once the
   * message is sent (src/checks/authentication.ts checkTransportTls): a
   * warning, once per receiver while it stands (edge.minTtl), never a refusal.
   */
  requireTls(carried: Carried, receiver: string, decision: Decision, report: PreflightReport, warn: (warning: MailedgeWarning) => void): void {
    // Sent over TLS, or TLS not offered: the common case needs no verdict to be written out.
    if (carried.tls !== null || carried.offered !== true) return;
    const check = checkTransportTls(carried, receiver);
    if (check.status === 'pass') return;
    const result: CheckResult = { ...check, severity: 'warn', domain: receiver };
    const key = `${result.code ?? ''}|${receiver}|${decision.address}`;
    if (this.warned.get(key)) return;
    this.warned.set(key, true, this.options.clock.now() + this.options.minTtl * 1000);
    warn({ code: 'STARTTLS_NOT_USED', message: `mailedge: ${result.actual}`, check: result, report });
  }

  private warnOnce(check: CheckResult, report: PreflightReport, warn: (warning: MailedgeWarning) => void): void {
    const key = `${check.code ?? ''}|${check.domain ?? ''}`;
    if (this.warned.get(key)) return;
    this.warned.set(key, true, this.options.clock.now() + this.options.minTtl * 1000);
    warn({ code: check.code ?? 'DMARC_FAIL_MONITORED', message: `mailedge: authentication ${check.domain ?? ''}: ${check.actual}`, check, report });
  }

}

/** The authentication object an error carries, when it is a refusal of the message stage. */
export function authenticationOf(err: unknown): Authentication | undefined {
  return err instanceof MailedgeError ? (err as MailedgeError & { authentication?: Authentication }).authentication : undefined;
}

function tooLarge(limit: number): CheckResult {
  return {
    id: 'authentication',
    status: 'fail',
    severity: 'enforce',
    expected: `a rendered message of at most ${limit} bytes`,
    actual: `the rendered message exceeds ${limit} bytes`,
    code: 'MESSAGE_TOO_LARGE',
    hint: "Send large files as links; or set edge.checks.authentication to 'off' to stream the message without the authentication check.",
    evidence: [],
  };
}
