/**
 * The verdict without sending (preflight, `mailedge check --from`): a sample
 * message with the given From, MAIL FROM, headers and DKIM keys is composed
 * and signed by Nodemailer itself (its stream transport: the same compiler and
 * signer a send uses), then judged like a real send for the edge the identity
 * check confirmed.
 */
import nodemailer from 'nodemailer';
import type { Resolver } from '../dns/resolver.js';
import { checkAuthentication } from '../checks/authentication.js';
import { withSeverity, type CheckResult } from '../checks/types.js';
import type { DkimKeyOptions } from '../checks/dkim.js';
import type { ResolvedEdgeOptions } from '../options.js';
import { domainOf } from './headers.js';
import { MessageAuthenticator, type Authentication } from './verdict.js';

export interface SampleMessage {
  /** The RFC 5322 From address. */
  from: string;
  /** MAIL FROM; default the From address; '' or '<>' for the null sender. */
  envelopeFrom?: string;
  /** Recipient shown in the sample (not contacted). */
  to?: string;
  /** Extra header fields, e.g. List-Unsubscribe. */
  headers?: Record<string, string>;
  /** Keys to sign with; default the transport's `dkim` option. */
  dkim?: DkimKeyOptions[];
}

export interface Prediction {
  authentication: Authentication;
  check: CheckResult;
}

export async function predictAuthentication(
  options: ResolvedEdgeOptions,
  resolver: Resolver,
  edge: { address: string; name: string },
  sample: SampleMessage,
): Promise<Prediction | undefined> {
  if (options.checks.authentication === 'off') return undefined;
  const keys = sample.dkim ?? options.dkim;
  const nullSender = sample.envelopeFrom !== undefined && (sample.envelopeFrom.trim() === '' || sample.envelopeFrom.trim() === '<>');
  const mailFrom = nullSender ? false : (sample.envelopeFrom ?? sample.from);
  const composer = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    ...(keys.length > 0 ? { dkim: { keys: keys.map((k) => ({ domainName: k.domainName, keySelector: k.keySelector, privateKey: k.privateKey })) } } : {}),
  });
  const sent = await composer.sendMail({
    from: sample.from,
    to: sample.to ?? 'postmaster@example.com',
    subject: 'mailedge check',
    text: 'A sample message, composed and signed to predict the receiver\'s verdict.',
    envelope: { from: mailFrom === false ? '' : mailFrom, to: sample.to ?? 'postmaster@example.com' },
    ...(sample.headers ? { headers: sample.headers } : {}),
  });
  const raw = sent.message as Buffer;
  const authenticator = new MessageAuthenticator(resolver, options.clock, keys);
  const signal = AbortSignal.timeout(options.timeout);
  const prepared = await authenticator.prepareRaw(raw, mailFrom, keys, signal);
  const judgement = await authenticator.judge(prepared, edge, options.receiver, signal);
  const dmarcReportedElsewhere = options.checks.dmarc !== 'off' && mailFrom !== false && prepared.fromDomain === domainOf(mailFrom);
  const verdict = checkAuthentication(judgement, { requirements: options.requirements, keys, dmarcReportedElsewhere, dkimReportedElsewhere: false });
  const severity = options.checks.authentication === 'warn' ? 'warn' : 'enforce';
  return { authentication: judgement.authentication, check: withSeverity(verdict, severity, prepared.fromDomain) };
}
