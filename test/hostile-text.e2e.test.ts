/**
 * Text a DNS server chose never reaches a terminal or a log raw. The zone
 * below puts CR LF, ESC [2J, the C1 control CSI (U+009B), a bidi override
 * (U+202E), the line separator (U+2028), DEL and NUL into SPF, DMARC and DKIM
 * TXT records, an MX target and a PTR name (RFC 1035 \DDD escapes, UTF-8
 * bytes for the code points above U+007F). Whatever path the text takes
 * (report fields, --json, the human report, warnings, logger calls, errors),
 * none of those code points arrives raw, and "€" (valid UTF-8) arrives as "€".
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { createTransport, preflight, type MailedgeOptions } from '../src/index.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';

/** The hostile bytes, as zone-file escapes: CR LF, ESC [2J, U+009B, U+202E, U+2028, DEL, NUL; then "€" written raw. */
const NASTY = '\\013\\010mailedge: FORGED LINE \\027[2J \\194\\155 \\226\\128\\174 \\226\\128\\168 \\127 \\000 €';
const ZONE = `
$TTL 300
hostile-text.test.                  TXT "v=spf1 ip4:127.0.0.0/8 bogus:${NASTY} -all"
hostile-text.test.                  MX  10 mx\\013\\010\\027[2J.hostile-text.test.
_dmarc.hostile-text.test.           TXT "v=DMARC1; p=none; rua=mailto:d@hostile-text.test; x=${NASTY}"
sel._domainkey.hostile-text.test.   TXT "v=DKIM1; k=rsa; p=MIIB${NASTY}"
77.1.0.127.in-addr.arpa.             PTR mail\\027[2J\\226\\128\\174.hostile-text.test.
`;

/** Code points that must never appear raw in anything mailedge prints, logs, returns or throws. */
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u;
/** LF is checked apart: structured output (inspect, stack traces) has LFs of its own; the forged line must not. */
const FORGED = /\n\s*mailedge: FORGED/;

let dns: FixtureDnsServer;
let receiver: Receiver;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
const dkim = { domainName: 'hostile-text.test', keySelector: 'sel', privateKey: String(privateKey.export({ type: 'pkcs8', format: 'pem' })) };

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE], zone: ZONE });
  receiver = await startReceiver({ host: '127.0.0.101' });
});
afterAll(async () => {
  await receiver.close();
  await dns.close();
});

function expectSafe(text: string, where: string): void {
  const raw = RAW.exec(text);
  expect(raw, `${where}: raw U+${(raw?.[0].codePointAt(0) ?? 0).toString(16).padStart(4, '0')} near ${JSON.stringify(text.slice(Math.max(0, (raw?.index ?? 0) - 40), (raw?.index ?? 0) + 10))}`).toBeNull();
  expect(text, where).not.toMatch(FORGED);
}

/** Every string inside a value, however deep: the fields a caller reads one by one. */
function strings(value: unknown, out: string[] = [], depth = 0): string[] {
  if (typeof value === 'string') out.push(value);
  else if (typeof value === 'object' && value !== null && depth < 10) {
    for (const key of Object.getOwnPropertyNames(value)) {
      if (key === 'stack') continue;
      strings((value as Record<string, unknown>)[key], out, depth + 1);
    }
  }
  return out;
}

function expectEveryStringSafe(value: unknown, where: string): void {
  for (const text of strings(value)) {
    expectSafe(text, where);
    expect(text, where).not.toMatch(/\r|\n/);
  }
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text), isTTY: false },
    stderr: { write: (text: string) => (stderr += text) },
    env: { NO_COLOR: '1' },
    cwd: mkdtempSync(join(tmpdir(), 'mailedge-hostile-')),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

describe('hostile DNS text', () => {
  it('never reaches report fields raw, and "€" survives', async () => {
    const report = await preflight(
      { localAddress: '127.0.1.77', host: '127.0.0.101', dkim, edge: { dns: { servers: [dns.server] } } } as MailedgeOptions,
      { from: 'app@hostile-text.test' },
    );
    const ids = report.checks.map((c) => c.id);
    expect(ids).toEqual(expect.arrayContaining(['ptr', 'spf', 'dmarc', 'dkim', 'sender-mx']));
    for (const check of report.checks) expectEveryStringSafe(check, `check ${check.id}`);
    expectEveryStringSafe(report.ptrNames, 'ptrNames');
    expectEveryStringSafe({ name: report.name, staleReason: report.staleReason }, 'report');
    const text = JSON.stringify(report);
    expect(text).toContain('€');
    expect(text).toContain('FORGED LINE');
    // Escaped, so a reader still sees what the record holds.
    expect(text).toMatch(/\\\\027\[2J/);
  });

  it('never reaches the CLI raw, human or --json', async () => {
    const args = ['check', '--local-address', '127.0.1.77', '--host', '127.0.0.101', '--dns', dns.server, '--from', 'app@hostile-text.test'];
    const human = await cli(args);
    const json = await cli([...args, '--json']);
    for (const [where, out] of [['human', human], ['--json', json]] as const) {
      expect(out.stdout.length, where).toBeGreaterThan(0);
      expectSafe(out.stdout, `${where} stdout`);
      expectSafe(out.stderr, `${where} stderr`);
      expect(out.stdout, where).toContain('€');
    }
    expect(() => JSON.parse(json.stdout) as unknown).not.toThrow();
  });

  it('never reaches warnings, logger calls or errors raw', async () => {
    const logged: unknown[][] = [];
    const logger = Object.fromEntries(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((level) => [level, (...args: unknown[]) => logged.push(args)]));
    const warnings: unknown[] = [];
    const outcomes: unknown[] = [];
    for (const localAddress of ['127.0.0.2', '127.0.1.77']) {
      for (const mode of ['enforce', 'warn'] as const) {
        const t = createTransport({
          host: '127.0.0.101',
          port: receiver.port,
          ignoreTLS: true,
          localAddress,
          logger,
          debug: true,
          dkim,
          edge: { mode, dns: { servers: [dns.server], timeout: 600 } },
        } as MailedgeOptions);
        t.on('warning', (w: unknown) => warnings.push(w));
        try {
          outcomes.push(await t.sendMail({ from: 'app@hostile-text.test', to: 'someone@hostile-text.test', subject: 's', text: 't' }));
        } catch (err) {
          outcomes.push(err);
          const e = err as { message?: unknown; hint?: unknown; evidence?: unknown };
          expectEveryStringSafe({ message: e.message, hint: e.hint, evidence: e.evidence }, 'error');
          expectSafe(String(err), 'String(err)');
          expectSafe(inspect(err, { depth: 8 }), 'inspect(err)');
        }
        t.close();
      }
    }
    expect(warnings.length + outcomes.filter((o) => o instanceof Error).length).toBeGreaterThan(0);
    for (const w of warnings) {
      expectEveryStringSafe(w, 'warning');
      expectSafe(inspect(w, { depth: 8 }), 'inspect(warning)');
    }
    for (const args of logged) for (const arg of args) expectSafe(typeof arg === 'string' ? arg : inspect(arg, { depth: 8 }), 'logger');
    // Some of it was about the hostile records, and "€" was shown as "€".
    const all = [...warnings, ...outcomes].map((v) => inspect(v, { depth: 8 })).join('\n');
    expect(all).toMatch(/hostile-text\.test/);
    expect(all).toContain('€');
  });
});
