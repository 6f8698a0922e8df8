/**
 * The drop-in: createTransport(options, defaults) returns Nodemailer's own
 * Mailer around the mailedge transport, built with the caller's options (so
 * transport-level dkim, logger, disableFileAccess and maxRecipients keep their
 * meaning, and transporter.options is what was given). mailedge adds
 * preflight(), the 'warning' event and `info.edge`.
 */
import Mail from 'nodemailer/lib/mailer';
import type { SendMailOptions } from 'nodemailer';
import type { SendMailCallback } from 'nodemailer/lib/mailer';
import type { PreflightReport } from './checks/types.js';
import { resolveEdgeOptions, type MailedgeOptions } from './options.js';
import { expandShorthands } from './shorthands.js';
import { createRedactor } from './redact.js';
import { MailedgeTransport } from './transport.js';
import type { MailedgeSentMessageInfo } from './routes/route.js';
import type { DirectSentMessageInfo } from './routes/direct.js';

export class MailedgeTransporter<T extends MailedgeSentMessageInfo = MailedgeSentMessageInfo> extends Mail<T> {
  /** The edge checks (and, for a relay, the route) as a structured report, without sending anything. */
  preflight(): Promise<PreflightReport> {
    return (this.transporter as unknown as MailedgeTransport).preflight();
  }

  /** Nodemailer's sendMail; every failure also carries `err.mail`, the message exactly as given here. */
  override sendMail(data: SendMailOptions): Promise<T>;
  override sendMail(data: SendMailOptions, callback: SendMailCallback<T>): void;
  override sendMail(data: SendMailOptions, callback?: SendMailCallback<T>): Promise<T> | void {
    if (callback) {
      super.sendMail(data, (err, info) => callback(err && withMail(err, data), info));
      return;
    }
    return super.sendMail(data).catch((err: unknown) => {
      throw withMail(err, data);
    });
  }
}

/** Not enumerable: the message may carry a per-message password, and a logged or serialised error must not. */
function withMail<E>(err: E, data: SendMailOptions): E {
  if (typeof err === 'object' && err !== null) Object.defineProperty(err, 'mail', { value: data, enumerable: false, writable: true, configurable: true });
  return err;
}

/** Drop-in for nodemailer.createTransport (SMTP): the same options or connection URL, plus `edge` and `direct`. */
export function createTransport(options: MailedgeOptions & { direct: true }, defaults?: SendMailOptions): MailedgeTransporter<DirectSentMessageInfo>;
export function createTransport(options: string | MailedgeOptions, defaults?: SendMailOptions): MailedgeTransporter;
export function createTransport(input: string | MailedgeOptions, defaults?: SendMailOptions): MailedgeTransporter<MailedgeSentMessageInfo> {
  const options = expandShorthands(input);
  // Validated before anything is built, so a bad option fails here, naming itself.
  resolveEdgeOptions(options.direct ? options : { ...options, host: options.host ?? 'localhost' });
  const redact = createRedactor({ auth: options.auth, dkim: options.dkim });
  const logger = redact.logger(options.logger);
  const transport = new MailedgeTransport(options, { redact, logger: logger ?? false });
  const mailer = new MailedgeTransporter<MailedgeSentMessageInfo>(transport as never, { ...options, logger: logger ?? false } as never, defaults);
  // Nodemailer's Mailer passes on idle, clear and error; mailedge's own event goes the same way.
  transport.on('warning', (warning) => mailer.emit('warning', warning));
  return mailer;
}
