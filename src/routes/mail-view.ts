/**
 * One compiled message, handed to a connection with a different envelope:
 * the recipients left after null-MX refusals, or one recipient domain's share
 * in direct delivery. The view inherits everything else from Nodemailer's own
 * MailMessage and MimeNode, so the bytes and the Message-ID stay the same.
 */
import { Readable } from 'node:stream';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type MimeNode from 'nodemailer/lib/mime-node';

export interface Envelope {
  from: string | false;
  to: string[];
}

/**
 * Nodemailer parses every address header again on each getEnvelope() call; a
 * compiled message's envelope no longer changes, so it is read once per node
 * and kept on the node (a property, not a side table: one lookup per message
 * fewer on the send path).
 */
const ENVELOPE = Symbol('mailedge.envelope');
type EnvelopeKeeper = MimeNode & { [ENVELOPE]?: ReturnType<MimeNode['getEnvelope']> };

function fullEnvelope(message: MimeNode): ReturnType<MimeNode['getEnvelope']> {
  const node = message as EnvelopeKeeper;
  // Own, not inherited: a view (below) inherits the original's and has an envelope of its own.
  const known = Object.prototype.hasOwnProperty.call(node, ENVELOPE) ? node[ENVELOPE] : undefined;
  if (known !== undefined) return known;
  const parsed = message.getEnvelope();
  node[ENVELOPE] = parsed;
  // Nodemailer's transport asks again when it sends, and adds fields to what it gets: a fresh copy of this parse
  // (an envelope given as an option is Nodemailer's to hand out, as it is).
  const given = (message as MimeNode & { _envelope?: unknown })._envelope;
  if (!given && !Object.prototype.hasOwnProperty.call(message, 'getEnvelope')) message.getEnvelope = () => ({ from: parsed.from, to: [...(parsed.to ?? [])] });
  return parsed;
}

/** The envelope as Nodemailer parsed it, kept once per node: read only, never to be changed by the caller. */
export function fullEnvelopeOf(mail: MailMessage): Readonly<ReturnType<MimeNode['getEnvelope']>> {
  return fullEnvelope(mail.message);
}

/** The envelope Nodemailer will send with: `envelope` when the message sets one, else From/Sender and To, Cc, Bcc. */
export function envelopeOf(mail: MailMessage): Envelope {
  const envelope = fullEnvelope(mail.message);
  // A copy: callers build other envelopes from it.
  return { from: envelope.from || false, to: [...(envelope.to ?? [])] };
}

/**
 * The message with another envelope; `raw` when it has been rendered already,
 * so that a stream attachment is read and an href fetched only once.
 */
export function withEnvelope(mail: MailMessage, envelope: Envelope, raw?: Buffer): MailMessage {
  const message = Object.create(mail.message) as MimeNode;
  // The original's own fields kept; the addresses parsed once per message (fullEnvelope).
  const full = fullEnvelope(mail.message);
  message.getEnvelope = () => ({ ...full, from: envelope.from, to: [...envelope.to] });
  // The original renders: Nodemailer adds Date, Message-ID and MIME-Version only on its root node, which a view is not.
  const original = mail.message;
  message.createReadStream =
    raw !== undefined
      ? () => Readable.from([raw], { objectMode: false }) as ReturnType<MimeNode['createReadStream']>
      : (options) => original.createReadStream(options);
  const view = Object.create(mail) as MailMessage;
  view.message = message;
  return view;
}
