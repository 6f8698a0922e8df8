/**
 * The drop-in: createTransport(options, defaults) returns Nodemailer's own
 * Mailer around the mailedge transport, built with the caller's options (so
 * transport-level dkim, logger, disableFileAccess and maxRecipients keep their
 * meaning, and transporter.options is what was given). mailedge adds
 * preflight(), the 'warning' event and `info.edge`.
 */
import Mail from 'nodemailer/lib/mailer';
import type { SendMailOptions } from 'nodemailer';
import type { PluginCallback, PluginFunction, SendMailCallback } from 'nodemailer/lib/mailer';
import type { PreflightReport } from './checks/types.js';
import { resolveEdgeOptions, type MailedgeOptions } from './options.js';
import { expandShorthands } from './shorthands.js';
import { createRedactor } from './redact.js';
import { MailedgeTransport } from './transport.js';
import type { MailedgeSentMessageInfo } from './routes/route.js';
import type { DirectSentMessageInfo } from './routes/direct.js';
import type { TlsRptReport } from './tls/report.js';

export class MailedgeTransporter<T extends MailedgeSentMessageInfo = MailedgeSentMessageInfo> extends Mail<T> {
  /** The edge checks (and, for a relay, the route) as a structured report, without sending anything. */
  preflight(): Promise<PreflightReport> {
    return (this.transporter as unknown as MailedgeTransport).preflight();
  }

  /** Issue 12: the TLS-RPT report since the last call (a new period starts); null without direct: true. */
  tlsReport(organization?: string, contact?: string): TlsRptReport | null {
    return (this.transporter as unknown as MailedgeTransport).tlsReport(organization, contact);
  }

  /**
   * Nodemailer's sendMail; every failure also carries `err.mail`, the message
   * exactly as given here. A callback that throws is logged, as Nodemailer
   * logs its own callback errors, wherever Nodemailer calls it from (an
   * aborted signal, a plugin's error), so it never reaches the process.
   */
  override sendMail(data: SendMailOptions): Promise<T>;
  override sendMail(data: SendMailOptions, callback: SendMailCallback<T>): void;
  override sendMail(data: SendMailOptions, callback?: SendMailCallback<T>): Promise<T> | void {
    if (callback) {
      const guarded: SendMailCallback<T> = (err, info) => {
        try {
          callback(err && withMail(err, data), info);
        } catch (thrown) {
          this.logger.error({ err: thrown, tnx: 'callback' }, 'Callback error: %s', thrown instanceof Error ? thrown.message : String(thrown));
        }
      };
      try {
        super.sendMail(data, guarded);
      } catch (err) {
        setImmediate(() => guarded(withMail(err, data) as Parameters<SendMailCallback<T>>[0], undefined as unknown as T));
      }
      return;
    }
    let sending: Promise<T>;
    try {
      sending = super.sendMail(data);
    } catch (err) {
      return Promise.reject(withMail(err, data));
    }
    return sending.catch((err: unknown) => {
      throw withMail(err, data);
    });
  }

  /** Nodemailer's use(); a plugin that throws fails its message (with err.mail) instead of escaping into Nodemailer's callbacks. */
  override use(step: string, plugin: PluginFunction<T>): this {
    return super.use(step, (mail, done) => {
      let called = false;
      const once: PluginCallback = (err) => {
        if (called) return;
        called = true;
        done(err);
      };
      try {
        plugin(mail, once);
      } catch (err) {
        once(err instanceof Error ? err : new Error(String(err), { cause: err }));
      }
    });
  }
}

/**
 * Not enumerable: the message may carry a per-message password, and a logged
 * or serialised error must not. A failure that is not an object (a plugin
 * failing with a string) becomes an Error, so it can carry the message too.
 */
function withMail(err: unknown, data: SendMailOptions): Error {
  const error = typeof err === 'object' && err !== null ? (err as Error) : new Error(String(err), { cause: err });
  Object.defineProperty(error, 'mail', { value: data, enumerable: false, writable: true, configurable: true });
  return error;
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
