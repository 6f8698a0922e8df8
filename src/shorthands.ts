/**
 * Nodemailer's shorthands for a route: a connection URL ('smtps://user:pass@host:465',
 * or the `url` option) and a well-known `service` ('Gmail', 'SES-US-EAST-1', ...).
 * They are turned into host, port, secure and auth with Nodemailer's own parser
 * and services list, and the route they name is then checked like any other.
 */
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import wellKnown from 'nodemailer/lib/well-known';
import { InvalidOptionError } from './errors.js';
import type { MailedgeOptions } from './options.js';

const URL_SCHEME = /^smtps?:\/\//i;

export function expandShorthands(input: string | MailedgeOptions): MailedgeOptions {
  if (typeof input === 'string') {
    if (!URL_SCHEME.test(input)) throw new InvalidOptionError('url', "expected a connection URL such as 'smtps://user:pass@smtp.example.com:465'");
    return expandShorthands({ url: input } as MailedgeOptions);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidOptionError('options', 'expected an object of SMTP options or a connection URL');
  }
  const { url, service, ...rest } = input as MailedgeOptions & { url?: unknown; service?: unknown };
  let options: MailedgeOptions = rest;
  let named: unknown = service;
  if (url !== undefined) {
    if (typeof url !== 'string' || !URL_SCHEME.test(url)) throw new InvalidOptionError('url', "expected a connection URL such as 'smtps://user:pass@smtp.example.com:465'");
    // As in Nodemailer: what the URL says wins over the other keys.
    const { service: urlService, ...parsed } = parseConnectionUrl(url);
    options = { ...options, ...(parsed as MailedgeOptions) };
    named ??= urlService;
  }
  if (named !== undefined) {
    if (typeof named !== 'string') throw new InvalidOptionError('service', `expected a service name such as 'Gmail', got ${JSON.stringify(named)}`);
    const known = wellKnown(named);
    if (!known) throw new InvalidOptionError('service', `${JSON.stringify(named)} is not in Nodemailer's list of well-known services; give host, port and secure instead`);
    // As in Nodemailer: the service's host, port and secure win.
    options = { ...options, ...(known as MailedgeOptions) };
  }
  return options;
}
