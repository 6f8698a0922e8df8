/**
 * The verdict engine: what the receiver that sees mailedge's edge address
 * will write in Authentication-Results (RFC 8601) for this message, computed
 * before it is handed to a connection, for the edge address and EHLO name it
 * leaves with.
 *
 * Split in two so the hand-over stays cheap: `prepare` does what depends on
 * the message alone (render once, read the headers, verify DKIM, find the From
 * domain's DMARC record), `judge` what depends on the edge (SPF of the
 * MAIL FROM for this address and name, DMARC alignment). Both read caches in
 * the common case (see dkim.ts, spf.ts, dmarc-record.ts).
 */
import type { MailMessage } from 'nodemailer/lib/mailer';
import type { Resolver } from '../dns/resolver.js';
import { Cache, type Clock } from '../cache.js';
import type { DkimKeyOptions } from '../checks/dkim.js';
import { dkimKeys } from '../options.js';
import { aligned } from './alignment.js';
import { DkimVerifier, type DkimOutcome } from './dkim.js';
import { findDmarcRecord, type DmarcRecordOutcome } from './dmarc-record.js';
import { authenticationResultsHeader } from './header.js';
import type { Authentication } from './authentication.js';
import { domainOf, readHeaderBlock, readHeaders, type MessageHeaders } from './headers.js';
import { compiledHeaders } from './compiled.js';
import { SpfEvaluator, type SpfOutcome } from './spf.js';
import { envelopeOf } from '../routes/mail-view.js';

export type ReceiverKind = 'final' | 'relay';

export type { Authentication } from './authentication.js';

/** What the message alone decides, before an edge is chosen. */
export interface PreparedMessage {
  /** The rendered bytes, verified and sent; undefined when the verdict came from the compiled headers (Nodemailer streams the message). */
  raw?: Buffer;
  headers: MessageHeaders;
  /** MAIL FROM: false for the null sender. */
  mailFrom: string | false;
  dkim: DkimOutcome;
  /** Undefined when the From header does not hold exactly one address. */
  fromDomain: string | undefined;
  dmarcRecord: DmarcRecordOutcome | undefined;
  /** The private keys the message is signed with: the message's own dkim option, else the transport's. */
  keys: readonly DkimKeyOptions[];
  /** The shape this message shares with others judged before (src/message/stage.ts keeps their verdicts per edge). */
  shape?: MessageShape;
}

/**
 * What every message of one shape shares: the same MAIL FROM, From field(s),
 * DKIM-Signature tags (d=, s=, a=, c=, the signed header names) from the
 * transport's keys, and the same fields the requirements read (Date and
 * Message-ID present or not, List-Unsubscribe and List-Unsubscribe-Post).
 * What else differs between them (Subject, the Date and Message-ID values,
 * recipients, the body, any field no verdict reads) changes no verdict: the
 * body hash is Nodemailer's signer's, verified in full for the first message
 * of the shape.
 */
export interface MessageShape {
  /** Unique per shape kept: what the per-edge verdicts of src/message/stage.ts are filed under. */
  id: number;
  dkim: DkimOutcome;
  fromDomain: string | undefined;
  dmarcRecord: DmarcRecordOutcome | undefined;
}

/** The verdict and what the check needs to explain it. */
export interface Judgement {
  authentication: Authentication;
  receiver: ReceiverKind;
  prepared: PreparedMessage;
  spf: SpfOutcome | undefined;
  /** The edge the verdict was computed for. */
  edge: { address: string; name: string };
}

/** From domains whose DMARC record is remembered at most. */
const MAX_DMARC = 10_000;
/** Message shapes remembered at most: a few per kind of message an application sends. */
const MAX_SHAPES = 1_000;
let shapeCount = 0;

/**
 * The fields a shape is made of (MessageShape), as one key. Header values are
 * unfolded lines and the signatures are built by mailedge: none holds a line
 * break, so each list is its length and its items on lines of their own;
 * MAIL FROM (from the options) is quoted.
 */
function shapeKeyOf(headers: MessageHeaders, signatures: readonly string[], mailFrom: string | false): string {
  const list = (items: readonly string[]): string => `${items.length}\n${items.join('\n')}`;
  const flags = (headers.get('date').length > 0 ? 'D' : '-') + (headers.get('message-id').length > 0 ? 'M' : '-');
  return `${JSON.stringify(mailFrom)}\n${flags}\n${list(headers.get('from'))}\n${list(signatures)}\n${list(headers.get('list-unsubscribe'))}\n${list(headers.get('list-unsubscribe-post'))}`;
}

export class MessageAuthenticator {
  private readonly dkim: DkimVerifier;
  private readonly spf: SpfEvaluator;
  private readonly dmarc: Cache<string, DmarcRecordOutcome>;
  private readonly shapes: Cache<string, MessageShape>;

  constructor(
    private readonly resolver: Resolver,
    clock: Clock,
    /** The transport's own dkim keys (Nodemailer's transport-level `dkim` option). */
    private readonly transportKeys: readonly DkimKeyOptions[],
    private readonly authserv = 'mailedge',
  ) {
    this.dkim = new DkimVerifier(resolver, clock);
    this.spf = new SpfEvaluator(resolver, clock);
    this.dmarc = new Cache({ name: 'dmarc records', max: MAX_DMARC, clock });
    this.shapes = new Cache({ name: 'message shapes', max: MAX_SHAPES, clock });
  }

  /** The message's own part of the verdict, from its rendered bytes. */
  async prepare(mail: MailMessage, raw: Buffer, signal: AbortSignal): Promise<PreparedMessage> {
    // A per-message dkim option replaces the transport's, as in Nodemailer.
    const keys = mail.data.dkim ? dkimKeys(mail.data.dkim) : this.transportKeys;
    return this.prepareRaw(raw, envelopeOf(mail).from, keys, signal, mail);
  }

  /**
   * The message's part of the verdict without rendering it, when nothing in it
   * needs the bytes: the header block from Nodemailer's compiled message and
   * DKIM verdicts kept for the same signature shape and key record answer.
   * Undefined when the message has to be rendered (src/message/compiled.ts
   * says when the header block cannot be known; a signature shape or key
   * record answer not verified in full yet).
   *
   * Synchronous when this shape of message was judged before within the TTLs
   * behind it (see `shapes`): the common case of an application sending one
   * kind of message again and again costs a header read and one cache read.
   */
  prepareCompiled(mail: MailMessage, signal: AbortSignal): PreparedMessage | undefined | Promise<PreparedMessage | undefined> {
    const compiled = compiledHeaders(mail);
    if (!compiled) return undefined;
    const headers = readHeaderBlock(
      compiled.block,
      compiled.signatures.map((value) => ({ name: 'dkim-signature', value })),
    );
    // A DKIM-Signature field of the caller's own (a signature mailedge did not make) needs the bytes.
    if (headers.get('dkim-signature').length !== compiled.signatures.length) return undefined;
    // As Nodemailer reads it: a falsy per-message dkim leaves the transport's signer in place.
    const ownKeys = Boolean(mail.data.dkim);
    const keys = ownKeys ? dkimKeys(mail.data.dkim) : this.transportKeys;
    const single = headers.fromFields === 1 && headers.from.length === 1 ? headers.from[0] : undefined;
    // Without an envelope option MAIL FROM is the From address (Nodemailer's getEnvelope), read above from the
    // same header; getEnvelope parses every address header again on each call.
    const mailFrom = mail.data.envelope === undefined && single !== undefined ? single : envelopeOf(mail).from;
    // A message's own keys are not part of the shape: such a message takes the full path.
    const shapeKey = ownKeys ? undefined : shapeKeyOf(headers, compiled.signatures, mailFrom);
    const known = shapeKey === undefined ? undefined : this.shapes.get(shapeKey);
    if (known) return { headers, mailFrom, keys, dkim: known.dkim, fromDomain: known.fromDomain, dmarcRecord: known.dmarcRecord, shape: known };
    return this.completeCompiled(mail, headers, mailFrom, keys, single, shapeKey, signal);
  }

  private async completeCompiled(
    mail: MailMessage,
    headers: MessageHeaders,
    mailFrom: string | false,
    keys: readonly DkimKeyOptions[],
    single: string | undefined,
    shapeKey: string | undefined,
    signal: AbortSignal,
  ): Promise<PreparedMessage | undefined> {
    // A miss makes this message the one whose rendering is verified for its shape (prepare() below, or release()).
    const dkim = await this.dkim.fromCache(headers, keys, signal, mail);
    if (!dkim) return undefined;
    const fromDomain = single === undefined ? undefined : domainOf(single);
    const dmarcRecord = fromDomain === undefined ? undefined : await this.dmarcRecord(fromDomain, signal);
    const prepared: PreparedMessage = { headers, mailFrom, dkim, fromDomain, dmarcRecord, keys };
    // Kept until the first DNS answer behind it expires: the DKIM key records and the DMARC record.
    const dmarcExpiresAt = dmarcRecord === undefined ? Number.POSITIVE_INFINITY : this.dmarc.expiryOf(dmarcRecord);
    if (shapeKey !== undefined && dkim.expiresAt !== undefined && dmarcExpiresAt !== undefined) {
      const shape: MessageShape = { id: ++shapeCount, dkim, fromDomain, dmarcRecord };
      this.shapes.set(shapeKey, shape, Math.min(dkim.expiresAt, dmarcExpiresAt));
      prepared.shape = shape;
    }
    return prepared;
  }

  /** The same from rendered bytes alone: `mailFrom` false for the null sender, `keys` the private keys that signed. */
  async prepareRaw(raw: Buffer, mailFrom: string | false, keys: readonly DkimKeyOptions[], signal: AbortSignal, claimant?: object): Promise<PreparedMessage> {
    const headers = readHeaders(raw);
    const single = headers.fromFields === 1 && headers.from.length === 1 ? headers.from[0] : undefined;
    const fromDomain = single === undefined ? undefined : domainOf(single);
    const [dkim, dmarcRecord] = await Promise.all([
      this.dkim.verify(raw, headers, keys, signal, claimant),
      fromDomain === undefined ? Promise.resolve(undefined) : this.dmarcRecord(fromDomain, signal),
    ]);
    return { raw, headers, mailFrom, dkim, fromDomain, dmarcRecord, keys };
  }

  /** The verdict for one edge address and EHLO name, as the receiver of the given kind computes it. */
  async judge(prepared: PreparedMessage, edge: { address: string; name: string }, receiver: ReceiverKind, signal: AbortSignal): Promise<Judgement> {
    const spf = receiver === 'final' ? await this.spf.evaluate(prepared.mailFrom, edge.address, edge.name, signal) : undefined;
    const spfDomain = spf?.domain ?? (prepared.mailFrom === false ? edge.name.toLowerCase() : domainOf(prepared.mailFrom));
    const spfPart: Authentication['spf'] = spf
      ? { result: spf.result, domain: spf.domain, ...(spf.result === 'pass' ? {} : spf.comment ? { reason: spf.comment } : {}) }
      : {
          result: null,
          domain: spfDomain,
          reason: `decided downstream: ${edge.address} connects to a relay, so the final receiver sees the relay's address, and a submission relay may rewrite MAIL FROM (set edge.receiver 'final' when the host is the final receiver)`,
        };
    const dkimPart = prepared.dkim.signatures.map((s) => ({ result: s.result, domain: s.domain, selector: s.selector, ...(s.reason ? { reason: s.reason } : {}) }));
    const dmarcPart = dmarcVerdict(prepared, spf, receiver);
    const authentication: Authentication = {
      spf: spfPart,
      dkim: dkimPart,
      dmarc: dmarcPart,
      header: '',
    };
    authentication.header = authenticationResultsHeader(this.authserv, authentication, spf?.identity ?? (prepared.mailFrom === false ? 'helo' : 'mailfrom'));
    return { authentication, receiver, prepared, spf, edge };
  }

  /** Ends what this message claimed at its cache miss, when it will not be verified after all (its rendering failed). */
  releaseClaim(mail: MailMessage): void {
    this.dkim.release(mail);
  }

  /** When a judgement stops being valid as far as SPF goes: never for a relay, where SPF is not evaluated. */
  spfExpiresAt(judgement: Judgement): number {
    return judgement.spf ? this.spf.expiresAt(judgement.spf) : Number.POSITIVE_INFINITY;
  }

  private dmarcRecord(domain: string, signal: AbortSignal): Promise<DmarcRecordOutcome> {
    return this.dmarc.getOrLoad(domain, async () => {
      const { outcome, expiresAt } = await findDmarcRecord(domain, this.resolver, signal);
      return { value: outcome, expiresAt: outcome.kind === 'temperror' ? 0 : expiresAt };
    });
  }
}

/** RFC 7489 section 6.6.2: pass when an identifier aligned with the From domain passes; DKIM named first because it survives forwarding. */
function dmarcVerdict(prepared: PreparedMessage, spf: SpfOutcome | undefined, receiver: ReceiverKind): Authentication['dmarc'] {
  const domain = prepared.fromDomain ?? null;
  const record = prepared.dmarcRecord;
  if (domain === null || record === undefined) {
    const count = prepared.headers.from.length;
    return { result: 'permerror', domain, policy: null, alignedBy: null, reason: `the From header holds ${count === 0 ? 'no address' : `${count} addresses in ${prepared.headers.fromFields} field(s)`}; DMARC needs exactly one` };
  }
  switch (record.kind) {
    case 'none':
      return { result: 'none', domain, policy: null, alignedBy: null, reason: 'no DMARC record at the From domain or its organisational domain' };
    case 'temperror':
      return { result: 'temperror', domain, policy: null, alignedBy: null, reason: record.reason };
    case 'permerror':
      // Several records: the receiver applies none of them and writes dmarc=none (RFC 7489 section 6.6.3).
      return { result: record.multiple ? 'none' : 'permerror', domain, policy: null, alignedBy: null, reason: record.reason };
    case 'record':
      break;
  }
  const policy = record.policy;
  const dkimAligned = prepared.dkim.signatures.some((s) => s.result === 'pass' && aligned(domain, s.domain, record.adkim));
  if (dkimAligned) return { result: 'pass', domain, policy, alignedBy: 'dkim' };
  if (!spf) {
    return {
      result: null,
      domain,
      policy,
      alignedBy: null,
      reason: 'no aligned DKIM signature passes, so DMARC rests on SPF, which the final receiver decides on the relay\'s address',
    };
  }
  if (spf.result === 'pass' && aligned(domain, spf.domain, record.aspf)) return { result: 'pass', domain, policy, alignedBy: 'spf' };
  const why = [
    prepared.dkim.signatures.length === 0 ? 'the message is not DKIM-signed' : `no passing DKIM signature is ${record.adkim === 's' ? 'strictly ' : ''}aligned with ${domain}`,
    spf.result !== 'pass' ? `SPF of ${spf.domain} is ${spf.result}` : `SPF passes for ${spf.domain}, which is not ${record.aspf === 's' ? 'strictly ' : ''}aligned with ${domain}`,
  ];
  return { result: 'fail', domain, policy, alignedBy: null, reason: why.join('; ') };
}
