import { createTransport } from '../create-transport.js';
import type { MailedgeWarning } from '../routes/route.js';
import type { DomainDelivery } from '../routes/direct.js';
import { MailedgeError } from '../errors.js';
import { isSmtpSendError } from '../send-error.js';
import { printable } from '../checks/hostname.js';
import { EDGE_FLAGS, parseFlags, requireAddress } from './args.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { directOptions, environment, transportOptions } from './settings.js';
// Issue 12: --dnsbl, --ca, --dnssec.
import { TLS_FLAGS, TLS_USAGE, withTlsFlags } from './tls-flags.js';
// Message identity (issue 11): --envelope-from, --dkim, --header, --check, --requirements, --receiver.
import { dkimFlags, edgeFromMessageFlags, envelopeFrom, headerFlags, MESSAGE_FLAGS, MESSAGE_USAGE } from './message-flags.js';
import { authenticationOf } from '../message/stage.js';

export const SEND_USAGE = `Usage: mailedge send --host H --from ADDR --to ADDR [options]
       mailedge send --direct --from ADDR --to ADDR [options]

Sends one message through the mailedge facade: the edge is checked first and
the message is refused, not sent, when the check fails.

Options:
  --host H                SMTP server (default: $SMTP_HOST)
  --direct                deliver to each recipient domain's MX hosts (port 25), no --host
  --mx-port P             with --direct, the MX port: for tests against loopback receivers only
  --port P                port (default: $SMTP_PORT, else 587)
  --local-address IP      source address to bind (default: $MAILEDGE_LOCAL_ADDRESS);
                          repeatable: several form a pool, used round-robin
  --pool IP,IP,...        the same as several --local-address
  --public-address IP     address receivers see behind NAT (default: $MAILEDGE_PUBLIC_ADDRESS)
  --dns HOST:PORT         resolver to use; repeatable (default: $MAILEDGE_DNS, else the system's)
  --dns-timeout MS        deadline for all lookups of the check (default 5000)
  --mode enforce|warn     refuse (default) or only warn when the check fails ($MAILEDGE_MODE)
  --from ADDR             envelope and header sender
  --to ADDR               recipient; repeatable
  --subject S             subject (default "mailedge test")
  --text T                body (default "Sent by mailedge.")
${MESSAGE_USAGE}  --ignore-tls            do not use STARTTLS even if offered
${TLS_USAGE}  --json                  print the result as JSON (with --direct: each domain's tls and tlsPolicy)
  -h, --help              show this help

Credentials come from $SMTP_USER and $SMTP_PASS (or .env), never from flags.
Exit codes: 0 sent (with --direct: delivered to every recipient), 1 refused or
rejected permanently (for any recipient), 2 temporary failure, 64 usage error.
`;

const SEND_FLAGS = {
  ...EDGE_FLAGS,
  mode: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string', multiple: true },
  subject: { type: 'string' },
  text: { type: 'string' },
  'ignore-tls': { type: 'boolean' },
  direct: { type: 'boolean' },
  'mx-port': { type: 'string' },
  ...MESSAGE_FLAGS,
  ...TLS_FLAGS,
} as const;

/** A domain's outcome, for --json: the error as its code, permanence and message. */
function domainJson(d: DomainDelivery): Record<string, unknown> {
  const { error, timing: _timing, edge: _edge, rejectedErrors: _errors, ...rest } = d;
  return { ...rest, error: error && { code: error.code, permanent: error.permanent, message: error.message } };
}

function domainLine(d: DomainDelivery): string {
  const tried = d.attempts.length > 0 ? ` (passed over: ${d.attempts.map((a) => `${a.mx}: ${a.reason}`).join('; ')})` : '';
  if (d.status === 'failed') return `  ${d.domain}: failed${d.mx ? ` at ${d.mx}` : ''}: ${d.error?.message ?? 'not delivered'}${tried}`;
  const some = d.status === 'partial' ? `, not to ${d.rejected.join(', ')}` : '';
  return `  ${d.domain}: ${d.status} via ${d.mx ?? '?'}${some}: ${d.response ?? ''}${tried}`;
}

/** A mailedge refusal says whether it is permanent; a receiver's RCPT reply says it with its code (5xx). */
function isPermanent(err: { permanent?: unknown; responseCode?: unknown }): boolean {
  if (typeof err.permanent === 'boolean') return err.permanent;
  return typeof err.responseCode === 'number' ? err.responseCode >= 500 : true;
}

/**
 * Through a relay the message went out, but not to everyone: as with --direct
 * and check, a recipient refused for good (before connecting, e.g. a null MX,
 * or by the relay) is exit 1, and only temporary refusals are exit 2.
 */
function relayExitCode(rejected: readonly string[], errors: ReadonlyArray<{ permanent?: unknown; responseCode?: unknown }>): number {
  if (rejected.length === 0 && errors.length === 0) return EXIT.ok;
  if (errors.length === 0 || errors.some(isPermanent)) return EXIT.misconfigured;
  return EXIT.temporary;
}

/** 0: every recipient got it; 1: some recipient failed for good; 2: only temporary failures. */
function directExitCode(domains: readonly DomainDelivery[]): number {
  const failed = domains.filter((d) => d.rejected.length > 0);
  if (failed.length === 0) return EXIT.ok;
  // Any recipient refused for good makes the whole run a permanent failure, not only the first error seen.
  return failed.some((d) => d.error === null || [d.error, ...d.rejectedErrors].some((e) => e.permanent)) ? EXIT.misconfigured : EXIT.temporary;
}

export async function sendCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, SEND_FLAGS);
  if (flags.help) {
    io.stdout.write(SEND_USAGE);
    return EXIT.ok;
  }
  const env = environment(io);
  let options = withTlsFlags(transportOptions(flags, env, { withMode: true }), flags, io);
  if (flags['mx-port'] !== undefined && !flags.direct) throw new UsageError('--mx-port: only with --direct');
  if (flags.direct) {
    if (flags.host !== undefined) throw new UsageError('--host: not with --direct, which delivers to the recipients\' MX hosts');
    if (flags.port !== undefined) throw new UsageError('--port: not with --direct (MX hosts listen on port 25)');
    options = directOptions(options, flags['mx-port']);
  } else if (!options.host) throw new UsageError('--host: required (or set SMTP_HOST), or --direct');
  if (flags.from === undefined) throw new UsageError('--from: required');
  requireAddress('--from', flags.from);
  if (!flags.to || flags.to.length === 0) throw new UsageError('--to: required');
  if (flags.direct && flags.receiver === 'relay') throw new UsageError('--receiver: not relay with --direct, whose MX hosts are the final receivers');
  options.edge = edgeFromMessageFlags(flags, options.edge);
  const mailFrom = envelopeFrom(flags);
  const headers = headerFlags(flags);
  const keys = dkimFlags(flags);
  // Transport-level, so the dkim check verifies the published keys too.
  const transport = createTransport({ ...options, ...(flags['ignore-tls'] ? { ignoreTLS: true } : {}), ...(keys.length > 0 ? { dkim: { keys } } : {}) });
  // Warnings (warn-mode sends, a replaced name, a stale identity) go to stderr, so --json stays parseable.
  transport.on('warning', (warning: MailedgeWarning) => void io.stderr.write(`warning [${warning.code}]: ${printable(warning.message)}\n`));
  try {
    const info = await transport.sendMail({
      from: flags.from,
      to: flags.to,
      subject: flags.subject ?? 'mailedge test',
      text: flags.text ?? 'Sent by mailedge.',
      ...(mailFrom !== undefined ? { envelope: { from: mailFrom, to: flags.to } } : {}),
      ...(headers ? { headers } : {}),
    });
    const authentication = info.authentication ?? null;
    const domains = (info as { domains?: DomainDelivery[] }).domains;
    if (domains) {
      const code = directExitCode(domains);
      if (flags.json) {
        const { name, address, verified, stale } = info.edge;
        io.stdout.write(`${JSON.stringify({ ok: code === EXIT.ok, name, address, verified, stale, messageId: info.messageId, accepted: info.accepted, rejected: info.rejected, authentication, domains: domains.map(domainJson) })}\n`);
      } else {
        io.stdout.write(`message ${printable(info.messageId)}:\n`);
        if (authentication) io.stdout.write(`authentication: ${printable(authentication.header)}\n`);
        for (const d of domains) io.stdout.write(`${printable(domainLine(d))}\n`);
      }
      return code;
    }
    const rejectedErrors = info.rejectedErrors ?? [];
    const code = relayExitCode(info.rejected ?? [], rejectedErrors);
    if (flags.json) {
      const { name, address, verified, stale } = info.edge;
      const refusals = rejectedErrors.map((e) => ({ recipient: e.recipient ?? null, code: e.code ?? null, permanent: isPermanent(e), message: e.message }));
      io.stdout.write(`${JSON.stringify({ ok: code === EXIT.ok, name, address, verified, stale, messageId: info.messageId, response: info.response, rejected: info.rejected, rejectedErrors: refusals, authentication })}\n`);
    } else {
      const caveat = info.edge.verified ? (info.edge.stale ? ' (identity served stale)' : '') : ' (UNVERIFIED: warn mode)';
      io.stdout.write(`sent from ${info.edge.address} as ${info.edge.name}${caveat}: ${printable(info.response)}\n`);
      for (const err of rejectedErrors) io.stdout.write(`  not sent to ${printable(err.recipient ?? '?')}: ${printable(err.message)}\n`);
      if (authentication) io.stdout.write(`  authentication: ${printable(authentication.header)}\n`);
    }
    return code;
  } catch (err) {
    if (!(err instanceof MailedgeError) && !isSmtpSendError(err)) throw err;
    const domains = (err as { domains?: DomainDelivery[] }).domains;
    // A receiver's or connection's failure keeps Nodemailer's code (EAUTH, EENVELOPE, ...): there is no hint or evidence of mailedge's.
    const hint = err instanceof MailedgeError ? err.hint : null;
    const evidence = err instanceof MailedgeError ? [...err.evidence] : [err.response].filter((line): line is string => typeof line === 'string');
    const authentication = authenticationOf(err);
    if (flags.json) {
      io.stdout.write(`${JSON.stringify({ ok: false, code: err.code ?? null, permanent: err.permanent, hint, message: err.message, evidence, ...(authentication ? { authentication } : {}), ...(err instanceof MailedgeError ? {} : { responseCode: err.responseCode ?? null, command: err.command ?? null }), ...(domains ? { domains: domains.map(domainJson) } : {}) })}\n`);
    } else {
      io.stdout.write(`${err instanceof MailedgeError ? 'refused' : 'failed'} [${err.code ?? 'unknown'}${err.permanent ? '' : ', temporary'}]: ${printable(err.message)}\n`);
      for (const line of evidence) io.stdout.write(`  ${printable(line)}\n`);
      if (hint) io.stdout.write(`  fix: ${printable(hint)}\n`);
      for (const d of domains ?? []) io.stdout.write(`${printable(domainLine(d))}\n`);
    }
    if (domains) return directExitCode(domains);
    return err.permanent ? EXIT.misconfigured : EXIT.temporary;
  } finally {
    transport.close();
  }
}
