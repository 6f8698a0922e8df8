import { preflight } from '../preflight.js';
import { renderReport } from '../report/human.js';
import { toJsonReport } from '../report/json.js';
import type { PreflightReport } from '../checks/types.js';
import { EDGE_FLAGS, parseFlags } from './args.js';
import { EXIT, UsageError, useColor, type CliIo } from './io.js';
import { environment, transportOptions } from './settings.js';

export const CHECK_USAGE = `Usage: mailedge check [options]

Checks the sending identity (edge address, PTR, forward confirmation, EHLO name)
without sending anything.

Options:
  --host DEST             destination the mail goes to (default: $SMTP_HOST)
  --port PORT             destination port (default: $SMTP_PORT, else 587)
  --local-address IP      source address to bind (default: $MAILEDGE_LOCAL_ADDRESS)
  --public-address IP     address receivers see behind NAT (default: $MAILEDGE_PUBLIC_ADDRESS)
  --dns HOST:PORT         resolver to use; repeatable (default: $MAILEDGE_DNS, else the system's)
  --dns-timeout MS        deadline for all lookups of the check (default 5000)
  --json                  print the report as JSON
  -h, --help              show this help

Exit codes: 0 passed, 1 misconfigured, 2 temporary failure (retry), 64 usage error.
`;

export function exitCodeFor(report: PreflightReport): number {
  if (report.ok) return EXIT.ok;
  return report.checks.some((c) => c.status === 'fail') ? EXIT.misconfigured : EXIT.temporary;
}

export async function checkCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, EDGE_FLAGS);
  if (flags.help) {
    io.stdout.write(CHECK_USAGE);
    return EXIT.ok;
  }
  const options = transportOptions(flags, environment(io), { withMode: false });
  if (!options.host && !options.localAddress && !options.edge?.publicAddress) {
    throw new UsageError('--host: give the destination, or --local-address / --public-address (or SMTP_HOST, MAILEDGE_LOCAL_ADDRESS)');
  }
  const report = await preflight(options);
  io.stdout.write(flags.json ? `${JSON.stringify(toJsonReport(report), null, 2)}\n` : renderReport(report, { color: useColor(io) }));
  return exitCodeFor(report);
}
