import { MailedgeError } from '../errors.js';
import { escapeText } from '../text/escape.js';
import { VERSION } from '../version.js';
import { EXIT, UsageError, type CliIo } from './io.js';

export const USAGE = `Usage: mailedge <command> [options]

Commands:
  check   check the sending identity (PTR, forward confirmation, EHLO name),
          and with --from / --to the sender and recipient domains
  send    send one message through the checked transport
  world   run the test world (DNS server, receivers) on loopback until Ctrl-C,
          to try check and send against
  demo    run the embedded demo world on loopback

Run "mailedge <command> --help" for a command's options; "mailedge --version"
for the version.
Exit codes: 0 ok, 1 misconfigured, 2 temporary failure (retry later), 64 usage error.
`;

type Command = (args: string[], io: CliIo) => Promise<number>;

/** Loaded on use: --version, --help and a mistyped command answer without loading Nodemailer and the checks. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  check: async () => (await import('./check.js')).checkCommand,
  send: async () => (await import('./send.js')).sendCommand,
  world: async () => (await import('./world.js')).worldCommand,
  demo: async () => (await import('./demo.js')).demoCommand,
};

const NAMES = 'check, send, world or demo';

/**
 * A usage error: what is wrong, then where to read more. The text may quote
 * the command line, so every line is escaped: an argument must not be able to
 * drive the terminal it is echoed to.
 */
function usageError(io: CliIo, prefix: string, message: string, help: string): number {
  const lines = message.split('\n').map(escapeText);
  io.stderr.write(`${prefix}: ${lines.join('\n')}\nRun "${help}" for usage.\n`);
  return EXIT.usage;
}

/** Runs one CLI invocation and returns its exit code; never calls process.exit. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) return usageError(io, 'mailedge', `a command is needed: ${NAMES}`, 'mailedge --help');
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (name === '--version') {
    io.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    const what = name.startsWith('-') ? 'unknown option' : 'unknown command';
    return usageError(io, 'mailedge', `${what} "${escapeText(name)}" (expected ${NAMES})`, 'mailedge --help');
  }
  try {
    return await (await load())(rest, io);
  } catch (err) {
    // An option the library refuses is a usage error as much as a bad flag.
    if (err instanceof UsageError || (err instanceof MailedgeError && err.code === 'INVALID_OPTION')) {
      // The library's message is one line: its line breaks, if any, are not ours to keep.
      const message = err instanceof UsageError ? err.message : escapeText(err.message);
      return usageError(io, `mailedge ${name}`, message, `mailedge ${name} --help`);
    }
    throw err;
  }
}
