/**
 * The CLI is a contract for scripts and CI: exit codes, output, and settings
 * from flags, the environment and a .env file.
 *
 * Its behaviour is tested in-process: runCli with the argv a shell would pass
 * and a captured io (stdout, stderr, env, cwd, whether stdout is a terminal, the
 * stop signal), which is all the bin hands it. What only a process can show is
 * tested by running the built bin as a child process, exactly as `npx mailedge`
 * would: that it wires process.env, the working directory and the terminal into
 * runCli, turns the returned code into the exit status, and that `mailedge
 * world` stops on SIGTERM and Ctrl-C.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startWorld, type World } from './support/world.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  /** Added to a clean environment; a value of undefined takes a variable out. */
  env?: Record<string, string | undefined>;
  /** Where a .env file is looked for; a fresh empty directory unless given. */
  cwd?: string;
}

const emptyDir = (): string => mkdtempSync(join(tmpdir(), 'mailedge-cli-'));

/** A clean environment: nothing of the developer's SMTP_* settings leaks in, and no colour unless a test asks. */
function cleanEnv(env: Record<string, string | undefined> = {}): Record<string, string> {
  return Object.fromEntries(Object.entries({ NO_COLOR: '1', ...env }).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** One CLI invocation in-process, with the io the bin would build: captured streams, the given environment and working directory. */
async function cli(args: string[], options: RunOptions & { tty?: boolean; stopSignal?: () => AbortSignal } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text), isTTY: options.tty ?? false },
    stderr: { write: (text: string) => (stderr += text) },
    env: cleanEnv(options.env),
    cwd: options.cwd ?? emptyDir(),
    ...(options.stopSignal ? { stopSignal: options.stopSignal } : {}),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** The built bin as a child process. */
function bin(args: string[], options: RunOptions & { nodeArgs?: string[] } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...(options.nodeArgs ?? []), BIN, ...args],
      { env: { PATH: process.env.PATH ?? '', ...cleanEnv(options.env) }, cwd: options.cwd ?? emptyDir(), timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err && typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : err ? -1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let world: World;
let authed: Receiver;
const SECRET = 'hunter2-Sup3rSecret';

beforeAll(async () => {
  world = await startWorld();
  authed = await startReceiver({ host: '127.0.0.101', auth: { user: 'app', pass: SECRET } });
  world.extra.push(authed);
});
afterAll(async () => {
  await world.close();
});
beforeEach(() => {
  world.strict.reset();
});

const dnsFlags = (): string[] => ['--dns', world.dns.server];

describe.concurrent('the built bin, as a child process', () => {
  it('--version prints the package version and exits 0', async () => {
    const result = await bin(['--version']);
    expect(result).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it('check --json exits 0 with the JSON report, its settings read from the process environment and the .env file of its working directory', async () => {
    const cwd = emptyDir();
    writeFileSync(join(cwd, '.env'), `MAILEDGE_DNS=${world.dns.server}\n`);
    const result = await bin(['check', '--host', 'smtp.relay.test', '--json'], { cwd, env: { MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' } });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; address: string; name: string; checks: Array<{ id: string; status: string }> };
    expect(report).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test' });
    expect(report.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr']);
  });

  it('a usage error exits 64, says so on stderr and prints nothing on stdout', async () => {
    const result = await bin(['check', '--bogus']);
    expect(result.code).toBe(64);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('--bogus');
    expect(lines[1]).toBe('Run "mailedge check --help" for usage.');
  });

  it('never lets the SMTP_PASS of its environment reach stdout or stderr, whatever writes there, even when authentication fails', async () => {
    const args = ['send', '--host', 'plain.relay.test', '--port', String(authed.port), '--local-address', '127.0.0.2', ...dnsFlags(), '--from', 'app@sender.test', '--to', 'someone@example.test', '--ignore-tls'];
    const wrong = await bin(args, { env: { SMTP_USER: 'app', SMTP_PASS: `${SECRET}-wrong` } });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout + wrong.stderr).not.toContain(SECRET);
    expect(wrong.stdout + wrong.stderr).not.toContain(Buffer.from(SECRET).toString('base64'));
  });

  it('colours the report when its stdout is a terminal and NO_COLOR is set but empty', async () => {
    // A child's stdout is a pipe; this preload makes the real bin believe it is a terminal, as `script` would, portably.
    const onTerminal = ['--import', 'data:text/javascript,process.stdout.isTTY=true'];
    const ESC = '\u001b[';
    const args = ['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags()];
    const result = await bin(args, { nodeArgs: onTerminal, env: { NO_COLOR: '' } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`${ESC}32m✔${ESC}0m destination`);
  });
});

describe('mailedge check', () => {
  it('exits 0 with the JSON report of a confirmed host', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags(), '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; address: string; name: string; checks: Array<{ id: string; status: string }> };
    expect(report).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test' });
    expect(report.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr']);
  });

  it('exits 1 and prints evidence and the fix for a forward mismatch', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.3', ...dnsFlags()]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('✘ fcrdns');
    expect(result.stdout).toContain('dig +short A mail.wrong.test → 127.0.0.99');
    expect(result.stdout).toContain('fix: Point the PTR name back');
    expect(result.stdout).toContain('[FCRDNS_MISMATCH]');
  });

  it('exits 1 with JSON for a missing PTR', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.4', ...dnsFlags(), '--json']);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { ok: boolean; name: null; checks: Array<{ id: string; code: string | null }> };
    expect(report.ok).toBe(false);
    expect(report.name).toBeNull();
    expect(report.checks.find((c) => c.id === 'ptr')?.code).toBe('PTR_MISSING');
  });

  it('does not crash on a hostile PTR name and never prints it raw', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.8', ...dnsFlags()]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('PTR_INVALID');
    expect(result.stdout).toContain('mail\\013\\010rset.good.test');
    expect(result.stdout).not.toContain('\r');
  });

  it('checks the public address given for NAT', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.10', '--public-address', '127.0.0.2', ...dnsFlags(), '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ address: '127.0.0.2', name: 'mail.good.test' });
  });

  it('exits 2 when DNS is unreachable', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.2', '--dns', '127.0.0.1:9', '--dns-timeout', '800', '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, checks: expect.arrayContaining([expect.objectContaining({ code: 'DNS_TEMPFAIL', status: 'temperror' })]) });
  });

  it('reads settings from the environment and a .env file, flags winning', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mailedge-env-'));
    writeFileSync(join(cwd, '.env'), `MAILEDGE_LOCAL_ADDRESS=127.0.0.4\nMAILEDGE_DNS=${world.dns.server}\n`);
    const fromFile = await cli(['check', '--json'], { cwd });
    expect(fromFile.code).toBe(1);
    expect(JSON.parse(fromFile.stdout)).toMatchObject({ address: '127.0.0.4' });
    const fromEnv = await cli(['check', '--json'], { cwd, env: { MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' } });
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ address: '127.0.0.2', ok: true });
    const fromFlag = await cli(['check', '--json', '--local-address', '127.0.0.3'], { cwd, env: { MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' } });
    expect(JSON.parse(fromFlag.stdout)).toMatchObject({ address: '127.0.0.3', ok: false });
  });
});

describe('mailedge check --from / --to', () => {
  // The relay plays the final receiver: only then is SPF judged on the edge address (issue 11).
  const base = (): string[] => ['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', '--receiver', 'final', ...dnsFlags()];
  interface JsonCheck {
    id: string;
    status: string;
    severity: string;
    domain?: string;
    code: string | null;
  }

  it('adds the sender and recipient checks to the JSON, each with its id, and exits 0 when all pass', async () => {
    const result = await cli([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test', '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { schema: number; ok: boolean; checks: JsonCheck[] };
    expect(report.schema).toBe(1);
    expect(report.checks.map((c) => c.id)).toEqual([
      'destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr', 'spf', 'sender-mx', 'dmarc', 'recipient-null-mx', 'authentication',
    ]);
    expect(report.checks.filter((c) => c.domain !== undefined).map((c) => [c.id, c.domain])).toEqual([
      ['spf', 'sender.test'], ['sender-mx', 'sender.test'], ['dmarc', 'sender.test'], ['recipient-null-mx', 'example.test'], ['authentication', 'sender.test'],
    ]);
  });

  it('exits 1 when an enforced check fails: a recipient at a null-MX domain', async () => {
    const result = await cli([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test', '--to', 'nobody@nullmx.example.test', '--json']);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { ok: boolean; checks: JsonCheck[] };
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => c.id === 'recipient-null-mx').map((c) => [c.domain, c.status, c.code])).toEqual([
      ['example.test', 'pass', null],
      ['nullmx.example.test', 'fail', 'RECIPIENT_NULL_MX'],
    ]);
  });

  it('exits 0 when only warn-level checks fail, and marks them as warnings', async () => {
    // fail.sender.test publishes p=reject: the message's own verdict (authentication) would fail it; only the envelope is shown here.
    const result = await cli([...base(), '--from', 'app@fail.sender.test', '--check', 'authentication=off']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('sender domain fail.sender.test');
    expect(result.stdout).toMatch(/! spf +fail with "v=spf1 ip4:127\.0\.9\.9 -all"/);
    expect(result.stdout).toContain('[SPF_FAIL] (fail, warn only: not enforced)');
    expect(result.stdout).toContain('fix: Authorise 127.0.0.2 in the SPF record of fail.sender.test');
  });

  it('exits 2 when the only enforced failures are temporary', async () => {
    world.dns.setFault('nullmx.example.test', { rcode: 'SERVFAIL' });
    try {
      const result = await cli([...base(), '--to', 'nobody@nullmx.example.test', '--json']);
      expect(result.code).toBe(2);
      const report = JSON.parse(result.stdout) as { checks: JsonCheck[] };
      expect(report.checks.find((c) => c.id === 'recipient-null-mx')).toMatchObject({ status: 'temperror', severity: 'enforce', code: 'DNS_TEMPFAIL' });
    } finally {
      world.dns.setFault('nullmx.example.test', undefined);
    }
  });

  it('groups the human report and draws the FCrDNS chain', async () => {
    const result = await cli([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test']);
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out.indexOf('edge identity')).toBeLessThan(out.indexOf('sender domain sender.test'));
    expect(out.indexOf('sender domain sender.test')).toBeLessThan(out.indexOf('recipients'));
    expect(out).toContain(['    127.0.0.2', '    └─ PTR mail.good.test ✔', '       └─ A 127.0.0.2 ✔ confirms → EHLO mail.good.test'].join('\n'));
  });
});

describe('mailedge send', () => {
  const sendArgs = (local: string, host = 'smtp.relay.test', port = (): number => world.strict.port): string[] => [
    'send', '--host', host, '--port', String(port()), '--local-address', local, ...dnsFlags(),
    '--from', 'app@sender.test', '--to', 'someone@example.test', '--ignore-tls', '--json',
  ];

  it('exits 0 and prints name, messageId and response', async () => {
    const result = await cli(sendArgs('127.0.0.2'));
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ ok: true, name: 'mail.good.test' });
    expect(out.messageId).toMatch(/^<.+>$/);
    expect(String(out.response)).toMatch(/^250 /);
    expect(world.strict.sessions.at(-1)?.ehlo).toBe('mail.good.test');
  });

  it('exits 1 with the code and hint when refused, without connecting', async () => {
    const result = await cli(sendArgs('127.0.0.4'));
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'PTR_MISSING', permanent: true, hint: expect.stringContaining('PTR') });
    expect(world.strict.connections).toBe(0);
  });

  it('says on stderr when warn mode sends with an unverified name, and marks it in the JSON', async () => {
    const result = await cli([...sendArgs('127.0.0.3'), '--mode', 'warn'].map((a) => (a === String(world.strict.port) ? String(world.plain.port) : a === 'smtp.relay.test' ? 'plain.relay.test' : a)));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, name: '[127.0.0.3]', verified: false, stale: false });
    expect(result.stderr).toContain('warning [UNVERIFIED_SEND]');
    expect(result.stderr).toContain('FCRDNS_MISMATCH');
  });

  it('exits 1 when a recipient is refused before connecting, though the others got the message', async () => {
    const result = await cli([...sendArgs('127.0.0.2'), '--to', 'nobody@nullmx.example.test']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({
      ok: false,
      name: 'mail.good.test',
      response: expect.stringMatching(/^250 /),
      rejected: ['nobody@nullmx.example.test'],
      rejectedErrors: [{ recipient: 'nobody@nullmx.example.test', code: 'RECIPIENT_NULL_MX', permanent: true }],
    });
    expect(world.strict.sessions.flatMap((session) => session.messages.map((m) => m.to))).toEqual([['someone@example.test']]);
    const human = await cli([...sendArgs('127.0.0.2'), '--to', 'nobody@nullmx.example.test'].filter((a) => a !== '--json'));
    expect(human.code).toBe(1);
    expect(human.stdout).toContain('not sent to nobody@nullmx.example.test');
  });

  it('exits 2 when DNS does not answer', async () => {
    const args = sendArgs('127.0.0.2').map((a) => (a === world.dns.server ? '127.0.0.1:9' : a));
    const result = await cli([...args, '--dns-timeout', '800']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'DNS_TEMPFAIL', permanent: false });
  });

  it('authenticates with SMTP_USER/SMTP_PASS and never prints the password, even on failure', async () => {
    const args = sendArgs('127.0.0.2', 'plain.relay.test', () => authed.port);
    const ok = await cli(args, { env: { SMTP_USER: 'app', SMTP_PASS: SECRET } });
    expect(ok.code).toBe(0);
    const wrong = await cli(args.filter((a) => a !== '--json'), { env: { SMTP_USER: 'app', SMTP_PASS: `${SECRET}-wrong` } });
    expect(wrong.code).toBe(1);
    const refused = await cli(sendArgs('127.0.0.3'), { env: { SMTP_USER: 'app', SMTP_PASS: SECRET } });
    for (const out of [ok, wrong, refused]) {
      expect(out.stdout + out.stderr).not.toContain(SECRET);
      expect(out.stdout + out.stderr).not.toContain(Buffer.from(SECRET).toString('base64'));
    }
  });
});

describe.concurrent('usage', () => {
  it.each([
    [['check', '--bogus'], '--bogus'],
    [['check', '--dns', 'nonsense'], '--dns'],
    [['check', '--local-address', 'mail.example.com'], '--local-address'],
    [['check', '--dns-timeout', 'soon'], '--dns-timeout'],
    [['send', '--host', '127.0.0.1', '--to', 'a@b.test'], '--from'],
    [['send', '--host', '127.0.0.1', '--from', 'a@b.test', '--port', '0', '--to', 'x@y.test'], '--port'],
    [['frobnicate'], 'frobnicate'],
    [[], 'command'],
    [['check'], '--host'],
    [['check', '--local-address', '127.0.0.2', '--from', 'app'], '--from'],
    [['check', '--local-address', '127.0.0.2', '--from', ''], '--from'],
    [['send', '--host', '127.0.0.1', '--from', 'app.sender.test', '--to', 'x@y.test'], '--from'],
  ])('%j exits 64 naming %s, then points at --help', async (args, flag) => {
    const result = await cli(args);
    expect(result.code).toBe(64);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(flag);
    const command = args[0] !== undefined && ['check', 'send'].includes(args[0]) ? `mailedge ${args[0]}` : 'mailedge';
    expect(lines[1]).toBe(`Run "${command} --help" for usage.`);
  });

  it("keeps parseArgs' whole explanation, over several lines", async () => {
    const result = await cli(['check', '--dns', '--json']);
    expect(result.code).toBe(64);
    expect(result.stderr).toBe(
      [
        "mailedge check: Option '--dns' argument is ambiguous.",
        "Did you forget to specify the option argument for '--dns'?",
        "To specify an option argument starting with a dash use '--dns=-XYZ'.",
        'Run "mailedge check --help" for usage.',
        '',
      ].join('\n'),
    );
  });

  // ESC (erase screen, colours), a C1 CSI, DEL, a bidi override and isolate, a line separator, and CR LF that would forge a line of ours.
  const HOSTILE = 'x\u001b[2J\u001b[31m\u009b1m\u007f\u202etxt.exe\u2066\u2028\r\nmailedge: all good';
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

  it.each([
    ['an unknown option', ['check', `--${HOSTILE}`], 'mailedge check: Unknown option'],
    ['a positional argument', ['check', HOSTILE], 'mailedge check: Unexpected argument'],
    ['an unknown command', [HOSTILE], 'mailedge: unknown command'],
    ['a bad flag value', ['check', '--dns', HOSTILE], 'mailedge check: --dns: expected HOST:PORT'],
    ['a bad --from', ['check', '--local-address', '127.0.0.2', '--from', HOSTILE], 'mailedge check: --from: expected an address'],
  ])('escapes %s echoed in a usage error, code point by code point', async (_what, args, start) => {
    const result = await cli(args);
    expect(result.code).toBe(64);
    expect(result.stderr.startsWith(start)).toBe(true);
    expect(result.stderr).not.toMatch(RAW);
    // The argument's CR LF is shown, not obeyed: no line of the error is the forged one.
    expect(result.stderr.split('\n')).not.toContain('mailedge: all good');
    expect(result.stderr.split('\n')).toHaveLength(3);
    expect(result.stderr).toContain('\\u{202E}txt.exe');
    expect(result.stderr).toMatch(/\\027\[2J|\\u001b\[2J/);
  });

  it.each([
    [{ MAILEDGE_DNS: 'nonsense' }, 'MAILEDGE_DNS'],
    [{ MAILEDGE_LOCAL_ADDRESS: 'mail.example.com' }, 'MAILEDGE_LOCAL_ADDRESS'],
    [{ SMTP_PORT: '99999', MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' }, 'SMTP_PORT'],
  ])('a bad environment value %j exits 64 naming the variable %s', async (env, variable) => {
    const result = await cli(['check', '--host', '127.0.0.1'], { env });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain(variable);
  });

  describe('colour on a terminal', () => {
    const check = (env: Record<string, string | undefined>): Promise<Run> =>
      cli(['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags()], { tty: true, env });
    const ESC = '\u001b[';

    it('is on when NO_COLOR is set but empty (no-color.org: only a non-empty value disables it)', async () => {
      const result = await check({ NO_COLOR: '' });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`${ESC}32m✔${ESC}0m destination`);
    });

    it('is off when NO_COLOR is non-empty, on when it is absent', async () => {
      const off = await check({ NO_COLOR: '1' });
      expect(off.code).toBe(0);
      expect(off.stdout).not.toContain(ESC);
      expect(off.stdout).toContain('✔ destination');
      const absent = await check({ NO_COLOR: undefined });
      expect(absent.stdout).toContain(ESC);
    });

    it('is off when stdout is not a terminal, NO_COLOR or not', async () => {
      const piped = await cli(['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags()], { env: { NO_COLOR: undefined } });
      expect(piped.code).toBe(0);
      expect(piped.stdout).not.toContain(ESC);
      expect(piped.stdout).toContain('✔ destination');
    });
  });

  it('ignores MAILEDGE_MODE for check, which has no mode', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.2', ...dnsFlags(), '--json'], { env: { MAILEDGE_MODE: 'bogus' } });
    expect(result.code).toBe(0);
  });

  it('--version prints the version and exits 0', async () => {
    const result = await cli(['--version']);
    expect(result).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it.each([['check'], ['send'], ['demo'], ['world'], []])('%j --help exits 0', async (...command) => {
    const result = await cli([...command, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: mailedge');
  });
});

describe.concurrent('mailedge demo', () => {
  // One run serves both tests: the demo starts a whole world of its own.
  let demo: Promise<Run> | undefined;
  const runDemo = (): Promise<Run> => (demo ??= cli(['demo']));

  it('says what it will show, shows one host sent and two refused, and exits 0', async () => {
    const result = await runDemo();
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    // Two lines of what is about to happen, before anything starts.
    expect(lines[0]).toMatch(/^mailedge demo: three hosts send/);
    expect(lines[1]).toMatch(/the good host sends, the two misconfigured ones are refused before connecting\.$/);
    expect(lines[2]).toBe('');
    expect(lines[3]).toMatch(/^DNS server on /);
    expect(result.stdout).toContain('the receiver saw 127.0.0.2 say EHLO mail.good.test');
    expect(result.stdout).toContain('refused [FCRDNS_MISMATCH]');
    expect(result.stdout).toContain('refused [PTR_MISSING]');
    expect(result.stdout).toContain('all three hosts behaved as expected');
  });

  it('prints each fix once, and its skip lines give the true reason', async () => {
    const { stdout } = await runDemo();
    const fixes = stdout.split('\n').filter((line) => line.includes('fix: ')).map((line) => line.trim());
    expect(fixes).toHaveLength(2);
    expect(new Set(fixes).size).toBe(fixes.length);
    const block = (host: string): string[] => {
      const from = stdout.indexOf(`── host ${host}`);
      const to = stdout.indexOf('\n── host', from + 1);
      return stdout.slice(from, to === -1 ? undefined : to).split('\n');
    };
    const skips = (host: string): string[] => block(host).filter((line) => /^ {2}- /.test(line));
    // 127.0.0.3 has a PTR name; what it lacks is the confirmation.
    expect(skips('127.0.0.3').map((line) => line.replace(/^ {2}- \S+ +/, ''))).toEqual([
      'not checked: there is a PTR name (mail.wrong.test), but it is not confirmed',
      'not checked: there is a PTR name (mail.wrong.test), but it is not confirmed',
      'not checked: there is a PTR name (mail.wrong.test), but it is not confirmed',
    ]);
    expect(skips('127.0.0.4').length).toBeGreaterThan(0);
    for (const line of skips('127.0.0.4')) expect(line).toMatch(/not checked: there is no PTR record$/);
  });
});

/** What `mailedge world` prints first: the banner up to and including the flag lines. */
interface WorldBanner {
  banner: string;
  relayFlags: string[];
  directFlags: string[];
}

/** The banner and its flags once the flag lines are out, else undefined. */
function worldBanner(stdout: string): WorldBanner | undefined {
  const lines = stdout.split('\n');
  const relayAt = lines.indexOf('Flags for mailedge check / send:');
  const directAt = lines.indexOf('Flags for mailedge send --direct:');
  const relay = lines[relayAt + 1];
  const direct = lines[directAt + 1];
  if (relayAt === -1 || directAt === -1 || relay === undefined || direct === undefined || lines.length <= directAt + 2) return undefined;
  return { banner: stdout, relayFlags: relay.trim().split(' '), directFlags: direct.trim().split(' ') };
}

/** `mailedge world` as a child process, as a person runs it in a second terminal. */
interface WorldProcess extends WorldBanner {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Every world child started, so that one left behind by a test that timed out is still killed. */
const worldChildren = new Set<ChildProcess>();
afterAll(() => {
  for (const child of worldChildren) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function startWorldProcess(args: string[] = ['--dns-port', '0', '--smtp-port', '0']): Promise<WorldProcess> {
  const child = spawn(process.execPath, [BIN, 'world', ...args], { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  worldChildren.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => void (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mailedge world printed no flags in time: ${stdout}${stderr}`));
    }, 10_000);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`mailedge world exited with ${code}: ${stderr}`));
    });
    child.stdout?.on('data', (chunk: string) => {
      stdout += chunk;
      const banner = worldBanner(stdout);
      if (!banner) return;
      clearTimeout(timer);
      resolve({ child, ...banner, exited });
    });
  });
}

/** Every stop signal handed to an in-process world, so that one left running by a failed test is still stopped. */
const worldStops = new Set<AbortController>();
afterAll(() => {
  for (const controller of worldStops) controller.abort();
});

/** A stop signal for an in-process `mailedge world`: what Ctrl-C does to the bin. */
function worldStop(): { stopSignal: () => AbortSignal; stop: () => void } {
  const controller = new AbortController();
  worldStops.add(controller);
  return { stopSignal: () => controller.signal, stop: () => controller.abort() };
}

/**
 * `mailedge world` in-process, once `ready` finds what it waits for in its
 * stdout; `stop` aborts its stop signal, as Ctrl-C does, and gives its result.
 */
async function startWorldInProcess<T>(args: string[], ready: (stdout: string) => T | undefined): Promise<{ ready: T; stop: () => Promise<Run> }> {
  const { stopSignal, stop } = worldStop();
  let stdout = '';
  let stderr = '';
  let onOutput = (): void => undefined;
  const io: CliIo = {
    stdout: {
      write: (text: string) => {
        stdout += text;
        onOutput();
        return true;
      },
      isTTY: false,
    },
    stderr: { write: (text: string) => (stderr += text) },
    env: cleanEnv(),
    cwd: emptyDir(),
    stopSignal,
  };
  const result = runCli(['world', ...args], io).then((code): Run => ({ code, stdout, stderr }));
  const value = await new Promise<T>((resolve, reject) => {
    onOutput = () => {
      const found = ready(stdout);
      if (found !== undefined) resolve(found);
    };
    result.then((early) => reject(new Error(`mailedge world returned ${early.code} before it was ready: ${early.stdout}${early.stderr}`)), reject);
  });
  return {
    ready: value,
    stop: () => {
      stop();
      return result;
    },
  };
}

function flagValue(flags: string[], name: string): string {
  const value = flags[flags.indexOf(name) + 1];
  if (!flags.includes(name) || value === undefined) throw new Error(`no ${name} in ${flags.join(' ')}`);
  return value;
}

/** Whether something accepts TCP connections at host:port. */
function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe.concurrent('mailedge world', () => {
  it('prints the flags that check and send need, serves them, and stops cleanly on SIGTERM', async () => {
    const world = await startWorldProcess();
    try {
      expect(world.relayFlags).toEqual(['--dns', expect.stringMatching(/^127\.0\.0\.1:\d+$/), '--host', 'smtp.relay.test', '--port', expect.stringMatching(/^\d+$/)]);
      const checked = await cli(['check', ...world.relayFlags, '--local-address', '127.0.0.2', '--from', 'app@sender.test', '--to', 'someone@example.test', '--json']);
      expect(checked.code).toBe(0);
      expect(JSON.parse(checked.stdout)).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test' });
      const sent = await cli(['send', ...world.relayFlags, '--local-address', '127.0.0.2', '--from', 'app@sender.test', '--to', 'someone@example.test']);
      expect(sent).toMatchObject({ code: 0, stdout: expect.stringMatching(/^sent from 127\.0\.0\.2 as mail\.good\.test: 250 /) });
      // The world's receiver is strict: a host the check lets through in warn mode is still turned away, as Gmail would.
      const warned = await cli(['send', ...world.relayFlags, '--local-address', '127.0.0.3', '--mode', 'warn', '--from', 'app@sender.test', '--to', 'someone@example.test']);
      expect(warned.code).toBe(1);
      expect(warned.stdout).toContain('5.7.25');
      const direct = await cli(['send', '--direct', ...world.directFlags, '--local-address', '127.0.0.2', '--from', 'app@sender.test', '--to', 'someone@example.test']);
      expect(direct).toMatchObject({ code: 0, stdout: expect.stringContaining('example.test: delivered via mx.example.test: 250 ') });

      const dns = flagValue(world.relayFlags, '--dns');
      const smtpPort = Number(flagValue(world.relayFlags, '--port'));
      world.child.kill('SIGTERM');
      const exit = await world.exited;
      expect(exit).toMatchObject({ code: 0, signal: null });
      expect(exit.stderr).toBe('mailedge world: stopping\n');
      // Torn down: nothing is left listening on its ports.
      const [dnsHost = '', dnsPort = ''] = dns.split(':');
      expect(await listening(dnsHost, Number(dnsPort))).toBe(false);
      for (const host of ['127.0.0.100', '127.0.0.101', '127.0.0.201']) expect(await listening(host, smtpPort)).toBe(false);
    } finally {
      world.child.kill('SIGKILL');
    }
  }, 60_000);

  it('stops cleanly on Ctrl-C (SIGINT) too', async () => {
    const world = await startWorldProcess();
    world.child.kill('SIGINT');
    expect(await world.exited).toMatchObject({ code: 0, signal: null });
  });

  it('prints the endpoints as JSON with --json', async () => {
    const firstLine = (stdout: string): string | undefined => (stdout.includes('\n') ? stdout.split('\n')[0] : undefined);
    const world = await startWorldInProcess(['--dns-port', '0', '--smtp-port', '0', '--json'], firstLine);
    try {
      const parsed = JSON.parse(world.ready) as { dns: string; receivers: Array<{ name: string; port: number }>; flags: { relay: string[]; direct: string[] } };
      expect(parsed.receivers.map((r) => r.name)).toEqual(['smtp.relay.test', 'plain.relay.test', 'mx.example.test']);
      expect(parsed.flags.relay).toEqual(['--dns', parsed.dns, '--host', 'smtp.relay.test', '--port', String(parsed.receivers[0]?.port)]);
      const checked = await cli(['check', ...parsed.flags.relay, '--local-address', '127.0.0.4', '--json']);
      expect(checked.code).toBe(1);
    } finally {
      await world.stop();
    }
  });

  it('exits 1 naming the flag when its port is taken', async () => {
    const first = await startWorldInProcess(['--dns-port', '0', '--smtp-port', '0'], worldBanner);
    try {
      const port = flagValue(first.ready.relayFlags, '--dns').split(':')[1] ?? '';
      const second = await cli(['world', '--dns-port', port, '--smtp-port', '0'], { stopSignal: worldStop().stopSignal });
      expect(second.code).toBe(1);
      expect(second.stderr).toBe(`mailedge world: 127.0.0.1:${port} is in use (another mailedge world?): stop it, or pass --dns-port 0 for any free port\n`);
    } finally {
      await first.stop();
    }
  });
});

describe.concurrent("the README's CLI examples, against mailedge world", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('\n## CLI\n'), readme.indexOf('\n## ', readme.indexOf('\n## CLI\n') + 1));
  const lines = section.split('\n');
  /** Each `$ mailedge ...` line and the output lines shown under it (up to "...", a blank line or the block's end). */
  const examples = lines.flatMap((line, i) => {
    const match = /^\$ mailedge (.+)$/.exec(line);
    if (!match?.[1]) return [];
    const shown: string[] = [];
    for (const next of lines.slice(i + 1)) {
      if (next === '...' || next === '' || next.startsWith('```') || next.startsWith('$ ')) break;
      shown.push(next);
    }
    return [{ args: match[1].split(' '), shown }];
  });
  /** A line shown in the README, with "..." standing for text that differs per run (ids, paths). */
  const pattern = (line: string): RegExp => new RegExp(`^${line.split('...').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);

  it('has examples, the world among them', () => {
    expect(examples.length).toBeGreaterThanOrEqual(5);
    expect(examples[0]?.args).toEqual(['world']);
  });

  it('each runs as shown, printing what the README shows', async () => {
    const running = await startWorldInProcess(['--dns-port', '0', '--smtp-port', '0'], worldBanner);
    const world = running.ready;
    try {
      const dns = flagValue(world.relayFlags, '--dns');
      const port = flagValue(world.relayFlags, '--port');
      // The README uses the world's default ports; this world took free ones.
      const here = (text: string): string => text.replaceAll('127.0.0.1:5300', dns).replaceAll('2525', port);
      for (const { args, shown } of examples) {
        const out = args[0] === 'world' ? world.banner : (await cli(args.map(here))).stdout;
        const got = out.split('\n');
        expect(shown.length, `the README shows output for mailedge ${args.join(' ')}`).toBeGreaterThan(0);
        shown.forEach((line, i) => expect(got[i], `line ${i + 1} of mailedge ${args.join(' ')}`).toMatch(pattern(here(line))));
      }
    } finally {
      await running.stop();
    }
  }, 60_000);
});
