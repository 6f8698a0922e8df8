/**
 * The CLI is a contract for scripts and CI: these tests run the built bin as a
 * child process, exactly as `npx mailedge` would, and read exit codes and output.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startWorld, type World } from './support/world.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      // A clean environment: nothing of the developer's SMTP_* settings leaks in.
      { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...options.env }, cwd: options.cwd ?? mkdtempSync(join(tmpdir(), 'mailedge-cli-')), timeout: 20_000 },
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

describe('mailedge check', () => {
  it('exits 0 with the JSON report of a confirmed host', async () => {
    const result = await run(['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags(), '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; address: string; name: string; checks: Array<{ id: string; status: string }> };
    expect(report).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test' });
    expect(report.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr']);
  });

  it('exits 1 and prints evidence and the fix for a forward mismatch', async () => {
    const result = await run(['check', '--local-address', '127.0.0.3', ...dnsFlags()]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('✘ fcrdns');
    expect(result.stdout).toContain('dig +short A mail.wrong.test → 127.0.0.99');
    expect(result.stdout).toContain('fix: Point the PTR name back');
    expect(result.stdout).toContain('[FCRDNS_MISMATCH]');
  });

  it('exits 1 with JSON for a missing PTR', async () => {
    const result = await run(['check', '--local-address', '127.0.0.4', ...dnsFlags(), '--json']);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { ok: boolean; name: null; checks: Array<{ id: string; code: string | null }> };
    expect(report.ok).toBe(false);
    expect(report.name).toBeNull();
    expect(report.checks.find((c) => c.id === 'ptr')?.code).toBe('PTR_MISSING');
  });

  it('does not crash on a hostile PTR name and never prints it raw', async () => {
    const result = await run(['check', '--local-address', '127.0.0.8', ...dnsFlags()]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('PTR_INVALID');
    expect(result.stdout).toContain('mail\\013\\010rset.good.test');
    expect(result.stdout).not.toContain('\r');
  });

  it('checks the public address given for NAT', async () => {
    const result = await run(['check', '--local-address', '127.0.0.10', '--public-address', '127.0.0.2', ...dnsFlags(), '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ address: '127.0.0.2', name: 'mail.good.test' });
  });

  it('exits 2 when DNS is unreachable', async () => {
    const result = await run(['check', '--local-address', '127.0.0.2', '--dns', '127.0.0.1:9', '--dns-timeout', '800', '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, checks: expect.arrayContaining([expect.objectContaining({ code: 'DNS_TEMPFAIL', status: 'temperror' })]) });
  });

  it('reads settings from the environment and a .env file, flags winning', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mailedge-env-'));
    writeFileSync(join(cwd, '.env'), `MAILEDGE_LOCAL_ADDRESS=127.0.0.4\nMAILEDGE_DNS=${world.dns.server}\n`);
    const fromFile = await run(['check', '--json'], { cwd });
    expect(fromFile.code).toBe(1);
    expect(JSON.parse(fromFile.stdout)).toMatchObject({ address: '127.0.0.4' });
    const fromEnv = await run(['check', '--json'], { cwd, env: { MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' } });
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ address: '127.0.0.2', ok: true });
    const fromFlag = await run(['check', '--json', '--local-address', '127.0.0.3'], { cwd, env: { MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' } });
    expect(JSON.parse(fromFlag.stdout)).toMatchObject({ address: '127.0.0.3', ok: false });
  });
});

describe('mailedge check --from / --to', () => {
  const base = (): string[] => ['check', '--local-address', '127.0.0.2', '--host', 'smtp.relay.test', ...dnsFlags()];
  interface JsonCheck {
    id: string;
    status: string;
    severity: string;
    domain?: string;
    code: string | null;
  }

  it('adds the sender and recipient checks to the JSON, each with its id, and exits 0 when all pass', async () => {
    const result = await run([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test', '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { schema: number; ok: boolean; checks: JsonCheck[] };
    expect(report.schema).toBe(1);
    expect(report.checks.map((c) => c.id)).toEqual([
      'destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr', 'spf', 'sender-mx', 'dmarc', 'recipient-null-mx',
    ]);
    expect(report.checks.filter((c) => c.domain !== undefined).map((c) => [c.id, c.domain])).toEqual([
      ['spf', 'sender.test'], ['sender-mx', 'sender.test'], ['dmarc', 'sender.test'], ['recipient-null-mx', 'example.test'],
    ]);
  });

  it('exits 1 when an enforced check fails: a recipient at a null-MX domain', async () => {
    const result = await run([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test', '--to', 'nobody@nullmx.example.test', '--json']);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { ok: boolean; checks: JsonCheck[] };
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => c.id === 'recipient-null-mx').map((c) => [c.domain, c.status, c.code])).toEqual([
      ['example.test', 'pass', null],
      ['nullmx.example.test', 'fail', 'RECIPIENT_NULL_MX'],
    ]);
  });

  it('exits 0 when only warn-level checks fail, and marks them as warnings', async () => {
    const result = await run([...base(), '--from', 'app@fail.sender.test']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('sender domain fail.sender.test');
    expect(result.stdout).toMatch(/! spf +fail with "v=spf1 ip4:127\.0\.9\.9 -all"/);
    expect(result.stdout).toContain('[SPF_FAIL] (fail, warn only: not enforced)');
    expect(result.stdout).toContain('fix: Authorise 127.0.0.2 in the SPF record of fail.sender.test');
  });

  it('exits 2 when the only enforced failures are temporary', async () => {
    world.dns.setFault('nullmx.example.test', { rcode: 'SERVFAIL' });
    try {
      const result = await run([...base(), '--to', 'nobody@nullmx.example.test', '--json']);
      expect(result.code).toBe(2);
      const report = JSON.parse(result.stdout) as { checks: JsonCheck[] };
      expect(report.checks.find((c) => c.id === 'recipient-null-mx')).toMatchObject({ status: 'temperror', severity: 'enforce', code: 'DNS_TEMPFAIL' });
    } finally {
      world.dns.setFault('nullmx.example.test', undefined);
    }
  });

  it('groups the human report and draws the FCrDNS chain', async () => {
    const result = await run([...base(), '--from', 'app@sender.test', '--to', 'someone@example.test']);
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
    const result = await run(sendArgs('127.0.0.2'));
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ ok: true, name: 'mail.good.test' });
    expect(out.messageId).toMatch(/^<.+>$/);
    expect(String(out.response)).toMatch(/^250 /);
    expect(world.strict.sessions.at(-1)?.ehlo).toBe('mail.good.test');
  });

  it('exits 1 with the code and hint when refused, without connecting', async () => {
    const result = await run(sendArgs('127.0.0.4'));
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'PTR_MISSING', permanent: true, hint: expect.stringContaining('PTR') });
    expect(world.strict.connections).toBe(0);
  });

  it('says on stderr when warn mode sends with an unverified name, and marks it in the JSON', async () => {
    const result = await run([...sendArgs('127.0.0.3'), '--mode', 'warn'].map((a) => (a === String(world.strict.port) ? String(world.plain.port) : a === 'smtp.relay.test' ? 'plain.relay.test' : a)));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, name: '[127.0.0.3]', verified: false, stale: false });
    expect(result.stderr).toContain('warning [UNVERIFIED_SEND]');
    expect(result.stderr).toContain('FCRDNS_MISMATCH');
  });

  it('exits 2 when DNS does not answer', async () => {
    const args = sendArgs('127.0.0.2').map((a) => (a === world.dns.server ? '127.0.0.1:9' : a));
    const result = await run([...args, '--dns-timeout', '800']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'DNS_TEMPFAIL', permanent: false });
  });

  it('authenticates with SMTP_USER/SMTP_PASS and never prints the password, even on failure', async () => {
    const args = sendArgs('127.0.0.2', 'plain.relay.test', () => authed.port);
    const ok = await run(args, { env: { SMTP_USER: 'app', SMTP_PASS: SECRET } });
    expect(ok.code).toBe(0);
    const wrong = await run(args.filter((a) => a !== '--json'), { env: { SMTP_USER: 'app', SMTP_PASS: `${SECRET}-wrong` } });
    expect(wrong.code).toBe(1);
    const refused = await run(sendArgs('127.0.0.3'), { env: { SMTP_USER: 'app', SMTP_PASS: SECRET } });
    for (const out of [ok, wrong, refused]) {
      expect(out.stdout + out.stderr).not.toContain(SECRET);
      expect(out.stdout + out.stderr).not.toContain(Buffer.from(SECRET).toString('base64'));
    }
  });
});

describe('usage', () => {
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
  ])('%j exits 64 naming %s on one line', async (args, flag) => {
    const result = await run(args);
    expect(result.code).toBe(64);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(flag);
  });

  it.each([
    [{ MAILEDGE_DNS: 'nonsense' }, 'MAILEDGE_DNS'],
    [{ MAILEDGE_LOCAL_ADDRESS: 'mail.example.com' }, 'MAILEDGE_LOCAL_ADDRESS'],
    [{ SMTP_PORT: '99999', MAILEDGE_LOCAL_ADDRESS: '127.0.0.2' }, 'SMTP_PORT'],
  ])('a bad environment value %j exits 64 naming the variable %s', async (env, variable) => {
    const result = await run(['check', '--host', '127.0.0.1'], { env });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain(variable);
  });

  it('ignores MAILEDGE_MODE for check, which has no mode', async () => {
    const result = await run(['check', '--local-address', '127.0.0.2', ...dnsFlags(), '--json'], { env: { MAILEDGE_MODE: 'bogus' } });
    expect(result.code).toBe(0);
  });

  it.each([['check'], ['send'], ['demo'], []])('%j --help exits 0', async (...command) => {
    const result = await run([...command, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: mailedge');
  });
});

describe('mailedge demo', () => {
  it('shows one host sent and two refused, and exits 0', async () => {
    const result = await run(['demo']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('the receiver saw 127.0.0.2 say EHLO mail.good.test');
    expect(result.stdout).toContain('refused [FCRDNS_MISMATCH]');
    expect(result.stdout).toContain('refused [PTR_MISSING]');
    expect(result.stdout).toContain('all three hosts behaved as expected');
  });
});
