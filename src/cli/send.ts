import { createTransport, type MailedgeWarning } from '../transport.js';
import { MailedgeError } from '../errors.js';
import { printable } from '../checks/hostname.js';
import { EDGE_FLAGS, parseFlags } from './args.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { environment, transportOptions } from './settings.js';

export const SEND_USAGE = `Usage: mailedge send --host H --from ADDR --to ADDR [options]

Sends one message through the mailedge facade: the edge is checked first and
the message is refused, not sent, when the check fails.

Options:
  --host H                SMTP server (default: $SMTP_HOST)
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
  --ignore-tls            do not use STARTTLS even if offered
  --json                  print the result as JSON
  -h, --help              show this help

Credentials come from $SMTP_USER and $SMTP_PASS (or .env), never from flags.
Exit codes: 0 sent, 1 refused or rejected permanently, 2 temporary failure, 64 usage error.
`;

const SEND_FLAGS = {
  ...EDGE_FLAGS,
  mode: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string', multiple: true },
  subject: { type: 'string' },
  text: { type: 'string' },
  'ignore-tls': { type: 'boolean' },
} as const;

export async function sendCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, SEND_FLAGS);
  if (flags.help) {
    io.stdout.write(SEND_USAGE);
    return EXIT.ok;
  }
  const env = environment(io);
  const options = transportOptions(flags, env, { withMode: true });
  if (!options.host) throw new UsageError('--host: required (or set SMTP_HOST)');
  if (!flags.from) throw new UsageError('--from: required');
  if (!flags.to || flags.to.length === 0) throw new UsageError('--to: required');
  const transport = createTransport({ ...options, ...(flags['ignore-tls'] ? { ignoreTLS: true } : {}) });
  // Warnings (warn-mode sends, a replaced name, a stale identity) go to stderr, so --json stays parseable.
  transport.on('warning', (warning: MailedgeWarning) => void io.stderr.write(`warning [${warning.code}]: ${printable(warning.message)}\n`));
  try {
    const info = await transport.sendMail({
      from: flags.from,
      to: flags.to,
      subject: flags.subject ?? 'mailedge test',
      text: flags.text ?? 'Sent by mailedge.',
    });
    if (flags.json) {
      const { name, address, verified, stale } = info.edge;
      io.stdout.write(`${JSON.stringify({ ok: true, name, address, verified, stale, messageId: info.messageId, response: info.response, rejected: info.rejected })}\n`);
    } else {
      const caveat = info.edge.verified ? (info.edge.stale ? ' (identity served stale)' : '') : ' (UNVERIFIED: warn mode)';
      io.stdout.write(`sent from ${info.edge.address} as ${info.edge.name}${caveat}: ${info.response}\n`);
      for (const err of info.rejectedErrors ?? []) io.stdout.write(`  not sent to ${printable(err.recipient ?? '?')}: ${printable(err.message)}\n`);
    }
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof MailedgeError)) throw err;
    if (flags.json) {
      io.stdout.write(`${JSON.stringify({ ok: false, code: err.code, permanent: err.permanent, hint: err.hint, message: err.message, evidence: err.evidence })}\n`);
    } else {
      io.stdout.write(`refused [${err.code}${err.permanent ? '' : ', temporary'}]: ${printable(err.message)}\n`);
      for (const line of err.evidence) io.stdout.write(`  ${printable(line)}\n`);
      io.stdout.write(`  fix: ${printable(err.hint)}\n`);
    }
    return err.permanent ? EXIT.misconfigured : EXIT.temporary;
  } finally {
    transport.close();
  }
}
