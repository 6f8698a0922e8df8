/**
 * The CLI's message-identity contract (issue 11): `send` with --envelope-from,
 * --dkim, --header, --check, --requirements and --receiver, and `check --from`
 * predicting the verdict without sending; --json carries `authentication`, a
 * refusal its code, and the exit codes are the usual ones. In-process through
 * runCli (what the bin calls), against this file's own DNS server and
 * authenticating receiver on 127.0.6.x.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';

const KEY_FILE = fileURLToPath(new URL('../fixtures/dkim/brand-s1.pem', import.meta.url));
let dns: FixtureDnsServer;
let receiver: Receiver;

beforeAll(async () => {
  dns = await startDnsServer({ host: '127.0.6.54', zoneFiles: [fileURLToPath(new URL('../fixtures/zones/auth.zone', import.meta.url))] });
  receiver = await startReceiver({ host: '127.0.6.20', dnsServer: dns.server, authentication: 'record' });
});
afterEach(() => receiver.reset());
afterAll(async () => {
  await receiver.close();
  await dns.close();
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text), isTTY: false },
    stderr: { write: (text: string) => (stderr += text) },
    env: { NO_COLOR: '1' },
    cwd: mkdtempSync(join(tmpdir(), 'mailedge-cli-auth-')),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** Identity-only envelope checks off: these tests are about the message's own verdict. */
const QUIET = ['--check', 'spf=off', '--check', 'sender-mx=off', '--check', 'dmarc=off', '--check', 'recipient-null-mx=off'];
const base = (): string[] => ['--host', 'mx.rcpt.test', '--port', String(receiver.port), '--local-address', '127.0.6.2', '--dns', dns.server, '--ignore-tls', ...QUIET];

describe('mailedge send', () => {
  it('signs with --dkim, sends to a final receiver, and prints authentication in --json', async () => {
    const run = await cli(['send', ...base(), '--receiver', 'final', '--from', 'news@aligned.test', '--to', 'user@rcpt.test', '--dkim', `aligned.test:s1:${KEY_FILE}`, '--json']);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { ok: boolean; authentication: { spf: { result: string }; dkim: Array<{ result: string; domain: string }>; dmarc: { result: string; alignedBy: string } } };
    expect(out.ok).toBe(true);
    expect(out.authentication).toMatchObject({ spf: { result: 'pass' }, dkim: [{ result: 'pass', domain: 'aligned.test' }], dmarc: { result: 'pass', alignedBy: 'dkim' } });
    const seen = receiver.sessions.flatMap((s) => s.authentication ?? [])[0];
    expect(seen?.dmarc?.result).toBe('pass');
  });

  it('refuses an ESP envelope under a brand p=reject: exit 1, code DMARC_FAIL, authentication in --json', async () => {
    const run = await cli(['send', ...base(), '--receiver', 'final', '--from', 'news@brand.test', '--envelope-from', 'bounce@esp.test', '--to', 'user@rcpt.test', '--json']);
    expect(run.code).toBe(1);
    const out = JSON.parse(run.stdout) as { ok: boolean; code: string; permanent: boolean; authentication: { dmarc: { result: string; policy: string } } };
    expect(out).toMatchObject({ ok: false, code: 'DMARC_FAIL', permanent: true, authentication: { dmarc: { result: 'fail', policy: 'reject' } } });
    expect(receiver.connections).toBe(0);
  });

  it('--check authentication=warn lets it through with a warning on stderr', async () => {
    const run = await cli(['send', ...base(), '--receiver', 'final', '--check', 'authentication=warn', '--from', 'news@orgsp.test', '--envelope-from', 'bounce@esp.test', '--to', 'user@rcpt.test']);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/DMARC_FAIL_MONITORED/);
    expect(run.stdout).toMatch(/authentication: mailedge; spf=pass smtp.mailfrom=esp.test; dkim=none; dmarc=fail \(p=none\) header.from=orgsp.test/);
  });

  it('the null sender with --envelope-from "<>": SPF of the EHLO name', async () => {
    const run = await cli(['send', ...base(), '--receiver', 'final', '--from', 'news@aligned.test', '--envelope-from', '<>', '--dkim', `aligned.test:s1:${KEY_FILE}`, '--to', 'user@rcpt.test', '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ authentication: { spf: { result: 'pass', domain: 'mail.edge.test' } } });
  });

  it('--requirements bulk with --header: one-click unsubscribe covered by the signature', async () => {
    const args = ['send', ...base(), '--receiver', 'final', '--requirements', 'bulk', '--from', 'news@aligned.test', '--to', 'user@rcpt.test', '--dkim', `aligned.test:s1:${KEY_FILE}`, '--json'];
    const missing = await cli(args);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ code: 'BULK_UNSUBSCRIBE_REQUIRED' });
    const ok = await cli([...args, '--header', 'List-Unsubscribe: <https://aligned.test/u?x=1>', '--header', 'List-Unsubscribe-Post: List-Unsubscribe=One-Click']);
    expect(ok.code).toBe(0);
  });

  it('through a relay (the default): SPF is null, with its reason', async () => {
    const run = await cli(['send', ...base(), '--from', 'news@aligned.test', '--to', 'user@rcpt.test', '--dkim', `aligned.test:s1:${KEY_FILE}`, '--json']);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { authentication: { spf: { result: null; reason: string } } };
    expect(out.authentication.spf.result).toBeNull();
    expect(out.authentication.spf.reason).toMatch(/downstream/);
  });

  it.each([
    [['--dkim', 'aligned.test:s1'], '--dkim'],
    [['--dkim', 'aligned.test:s1:/nonexistent.pem'], '--dkim'],
    [['--header', 'no colon'], '--header'],
    [['--check', 'bogus=warn'], '--check'],
    [['--check', 'authentication=strict'], '--check'],
    [['--requirements', 'some'], '--requirements'],
    [['--receiver', 'edge'], '--receiver'],
    [['--envelope-from', 'nobody'], '--envelope-from'],
  ])('usage error naming the flag: %j', async (extra, flag) => {
    const run = await cli(['send', ...base(), '--from', 'news@aligned.test', '--to', 'user@rcpt.test', ...extra]);
    expect(run.code).toBe(64);
    expect(run.stderr).toContain(flag);
  });
});

describe('mailedge check --from', () => {
  it('predicts the verdict of a signed sample message, in --json and in words', async () => {
    const args = ['check', '--host', 'mx.rcpt.test', '--local-address', '127.0.6.2', '--dns', dns.server, '--receiver', 'final', '--from', 'news@aligned.test', '--dkim', `aligned.test:s1:${KEY_FILE}`];
    const json = await cli([...args, '--json']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { authentication: unknown; checks: Array<{ id: string; status: string }> };
    expect(report.authentication).toMatchObject({ spf: { result: 'pass' }, dkim: [{ result: 'pass' }], dmarc: { result: 'pass', alignedBy: 'dkim' } });
    expect(report.checks.find((c) => c.id === 'authentication')?.status).toBe('pass');
    const human = await cli(args);
    expect(human.stdout).toContain('message from aligned.test');
    expect(human.stdout).toContain('Authentication-Results: mailedge; spf=pass smtp.mailfrom=aligned.test; dkim=pass header.d=aligned.test header.s=s1; dmarc=pass (p=reject) header.from=aligned.test');
    expect(receiver.connections).toBe(0);
  });

  it('exits 1 with DMARC_FAIL for an unaligned envelope under p=reject, and names the fix', async () => {
    const run = await cli(['check', '--host', 'mx.rcpt.test', '--local-address', '127.0.6.2', '--dns', dns.server, '--receiver', 'final', '--from', 'news@brand.test', '--envelope-from', 'bounce@esp.test', '--json']);
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout) as { checks: Array<{ id: string; code: string | null; hint: string | null }> };
    const check = report.checks.find((c) => c.id === 'authentication');
    expect(check?.code).toBe('DMARC_FAIL');
    expect(check?.hint).toMatch(/d=brand\.test/);
  });

  it('--requirements bulk: the sample needs SPF and DKIM', async () => {
    const run = await cli(['check', '--host', 'mx.rcpt.test', '--local-address', '127.0.6.2', '--dns', dns.server, '--receiver', 'final', '--requirements', 'bulk', '--from', 'a@nodmarc.test', '--json']);
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout) as { checks: Array<{ id: string; code: string | null }> };
    expect(report.checks.find((c) => c.id === 'authentication')?.code).toBe('BULK_DKIM_REQUIRED');
  });
});
