import { MailedgeError } from '../errors.js';
import { CHECK_USAGE, checkCommand } from './check.js';
import { DEMO_USAGE, demoCommand } from './demo.js';
import { SEND_USAGE, sendCommand } from './send.js';
import { EXIT, UsageError, type CliIo } from './io.js';

export const USAGE = `Usage: mailedge <command> [options]

Commands:
  check   check the sending identity (PTR, forward confirmation, EHLO name),
          and with --from / --to the sender and recipient domains
  send    send one message through the checked transport
  demo    run the embedded demo world on loopback

Run "mailedge <command> --help" for a command's options.
Exit codes: 0 ok, 1 misconfigured, 2 temporary failure (retry later), 64 usage error.
`;

const COMMANDS: Record<string, { run: (args: string[], io: CliIo) => Promise<number>; usage: string }> = {
  check: { run: checkCommand, usage: CHECK_USAGE },
  send: { run: sendCommand, usage: SEND_USAGE },
  demo: { run: demoCommand, usage: DEMO_USAGE },
};

/** Runs one CLI invocation and returns its exit code; never calls process.exit. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write('mailedge: a command is needed: check, send or demo (mailedge --help)\n');
    return EXIT.usage;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr.write(`mailedge: unknown command "${name}" (expected check, send or demo)\n`);
    return EXIT.usage;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`mailedge ${name}: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof MailedgeError && err.code === 'INVALID_OPTION') {
      io.stderr.write(`mailedge ${name}: ${err.message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
}
