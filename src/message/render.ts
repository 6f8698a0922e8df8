/**
 * The message rendered once, for both the verdict and the wire: Nodemailer's
 * stream (plugins, DKIM signing included) is read into memory up to a cap, and
 * the same bytes are then verified and sent. A stream attachment can be read
 * only once, and an href attachment must not be fetched twice; a view of the
 * mail that already carries its bytes (direct delivery renders before it
 * splits recipients by domain) is read back without rendering again.
 */
import type { MailMessage } from 'nodemailer/lib/mailer';

/**
 * 50 MB: above what Gmail (25 MB of attachments, 50 MB on the wire), Outlook
 * and Yahoo accept, so no message a large receiver would take is refused here.
 */
export const MAX_RENDERED_BYTES = 50 * 1024 * 1024;

export class MessageTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the rendered message exceeds ${limit} bytes`);
  }
}

/** The bytes Nodemailer would put on the wire for this message, signed; rejects past `limit`. */
export function renderOnce(mail: MailMessage, limit = MAX_RENDERED_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = mail.message.createReadStream();
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      if (err) reject(err);
      else resolve(chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks, size));
    };
    stream.on('data', (chunk: Buffer | string) => {
      if (done) return;
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += bytes.length;
      if (size > limit) {
        // Nothing more is read: a huge attachment is not pulled into memory only to be refused.
        finish(new MessageTooLargeError(limit));
        stream.destroy();
        return;
      }
      chunks.push(bytes);
    });
    stream.once('error', (err: Error) => finish(err));
    stream.once('end', () => finish(null));
  });
}
