import { preflight } from '../preflight.js';
import { renderReport } from '../report/human.js';
import { toJsonReport } from '../report/json.js';
import { reportStatus, type PreflightReport } from '../checks/types.js';
import { EDGE_FLAGS, parseFlags, requireAddress } from './args.js';
import { EXIT, UsageError, useColor, type CliIo } from './io.js';
import { directOptions, environment, transportOptions } from './settings.js';
// Issue 12: --direct (each recipient domain's MX hosts and TLS policy, probed), --dnsbl, --ca, --dnssec.
import { renderDomains, TLS_FLAGS, TLS_USAGE, withTlsFlags } from './tls-flags.js';
// Message identity (issue 11): the verdict of a sample message with --from.
import { dkimFlags, edgeFromMessageFlags, envelopeFrom, headerFlags, MESSAGE_FLAGS, MESSAGE_USAGE } from './message-flags.js';

export const CHECK_USAGE = `Usage: mailedge check [options]

Checks the sending identity (edge address, PTR, forward confirmation, EHLO name)
without sending anything; with --from and --to, the envelope sender's domain
(SPF, MX, DMARC) and the recipients' domains (null MX) as well. DNS only.

Options:
  --host DEST             destination the mail goes to (default: $SMTP_HOST)
  --port PORT             destination port (default: $SMTP_PORT, else 587)
  --local-address IP      source address to bind (default: $MAILEDGE_LOCAL_ADDRESS);
                          repeatable: several form a pool, one block per member
  --pool IP,IP,...        the same as several --local-address
  --public-address IP     address receivers see behind NAT (default: $MAILEDGE_PUBLIC_ADDRESS)
  --dns HOST:PORT         resolver to use; repeatable (default: $MAILEDGE_DNS, else the system's)
  --dns-timeout MS        deadline for all lookups of the check (default 5000)
  --from ADDR             envelope sender to check: spf, sender-mx, dmarc; and the From of a
                          sample message whose SPF/DKIM/DMARC verdict is predicted (authentication)
${MESSAGE_USAGE}  --to ADDR               recipient to check: recipient-null-mx; repeatable
  --direct                with --to: each recipient domain's MX hosts, its TLS policy (MTA-STS,
                          DANE) and whether this edge satisfies it: connect, EHLO, STARTTLS,
                          verify, QUIT (never MAIL or RCPT)
  --mx-port P             with --direct, the MX port: for tests against loopback receivers only
${TLS_USAGE}  --json                  print the report as JSON (docs/report.schema.json)
  -h, --help              show this help

Exit codes: 0 no enforced check failed (warnings allowed), 1 an enforced check
failed, 2 the only enforced failures are temporary (retry; with --direct also:
a domain has no MX host usable now), 64 usage error.
`;

const CHECK_FLAGS = {
  ...EDGE_FLAGS,
  from: { type: 'string' },
  to: { type: 'string', multiple: true },
  ...MESSAGE_FLAGS,
  ...TLS_FLAGS,
  direct: { type: 'boolean' },
  'mx-port': { type: 'string' },
} as const;

/** Only enforced checks decide the exit code: a warn-level failure is printed, and the step goes on. */
export function exitCodeFor(report: PreflightReport): number {
  return { pass: EXIT.ok, fail: EXIT.misconfigured, temperror: EXIT.temporary }[reportStatus(report)];
}

export async function checkCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, CHECK_FLAGS);
  if (flags.help) {
    io.stdout.write(CHECK_USAGE);
    return EXIT.ok;
  }
  let options = transportOptions(flags, environment(io), { withMode: false });
  options = withTlsFlags(options, flags, io);
  if (flags['mx-port'] !== undefined && !flags.direct) throw new UsageError('--mx-port: only with --direct');
  if (flags.direct) {
    if (flags.host !== undefined) throw new UsageError("--host: not with --direct, which checks the recipients' MX hosts");
    if (!flags.to || flags.to.length === 0) throw new UsageError('--to: required with --direct (the recipient domains to check)');
    options = directOptions(options, flags['mx-port']);
  }
  if (!options.host && !options.localAddress && !options.edge?.publicAddress && !options.edge?.pool) {
    throw new UsageError('--host: give the destination, or --local-address / --public-address (or SMTP_HOST, MAILEDGE_LOCAL_ADDRESS)');
  }
  if (flags.from !== undefined) requireAddress('--from', flags.from);
  options.edge = edgeFromMessageFlags(flags, options.edge);
  const mailFrom = envelopeFrom(flags);
  const keys = dkimFlags(flags);
  const headers = headerFlags(flags);
  if (flags.from === undefined && (mailFrom !== undefined || keys.length > 0 || headers)) throw new UsageError('--from: required with --envelope-from, --dkim or --header (the sample message needs a From)');
  const sender = mailFrom ?? flags.from;
  const message = flags.from === undefined ? undefined : { from: flags.from, ...(mailFrom !== undefined ? { envelopeFrom: mailFrom } : {}), ...(flags.to?.[0] ? { to: flags.to[0] } : {}), ...(headers ? { headers } : {}) };
  const report = await preflight(
    { ...options, ...(keys.length > 0 ? { dkim: { keys } } : {}) },
    { ...(sender !== undefined ? { from: sender } : {}), ...(flags.to ? { to: flags.to } : {}), ...(message ? { message } : {}) },
  );
  io.stdout.write(flags.json ? `${JSON.stringify(toJsonReport(report), null, 2)}\n` : renderReport(report, { color: useColor(io) }));
  // Issue 12: the per-domain probe, and a domain with no usable MX host now is a temporary failure of the check.
  if (!flags.json && report.domains) io.stdout.write(renderDomains(report.domains));
  const code = exitCodeFor(report);
  if (code === EXIT.ok && report.domains?.some((d) => !d.mx.some((m) => m.usable))) return EXIT.temporary;
  return code;
}
