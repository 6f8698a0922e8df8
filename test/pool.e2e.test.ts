/**
 * edge.pool: several source addresses, each verified on its own and sending
 * with its own confirmed name; members that fail are left out and reported,
 * and with none left the send is refused with every member's evidence.
 * 127.0.0.2 (mail.good.test) and 127.0.0.6 (a.both.test) pass; 127.0.0.3
 * (mismatch) and 127.0.0.4 (no PTR) fail. Sent to the strict receiver.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useWorld, MESSAGE } from './support/world.js';
import { EdgeRefusedError, InvalidOptionError, PreflightFailedError } from '../src/errors.js';
import { createTransport } from '../src/create-transport.js';
import { type MailedgeWarning } from '../src/routes/route.js';
import { preflight } from '../src/preflight.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';
import type { MailedgeOptions } from '../src/options.js';

const world = useWorld();

const pool = (...addresses: string[]): MailedgeOptions['edge'] => ({ pool: addresses.map((localAddress) => ({ localAddress })) });

function viaPool(edge: MailedgeOptions['edge']) {
  return world.transport({ host: 'smtp.relay.test', port: world.strict.port, edge });
}

describe('a pool with one bad member', () => {
  it('sends round-robin over the passing members, each with its own confirmed name, and reports the bad one once', async () => {
    const transport = viaPool(pool('127.0.0.2', '127.0.0.3', '127.0.0.6'));
    const warnings: MailedgeWarning[] = [];
    transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const infos = [];
    for (let i = 0; i < 4; i++) infos.push(await transport.sendMail({ ...MESSAGE }));
    expect(infos.map((info) => [info.edge.address, info.edge.name])).toEqual([
      ['127.0.0.2', 'mail.good.test'],
      ['127.0.0.6', 'a.both.test'],
      ['127.0.0.2', 'mail.good.test'],
      ['127.0.0.6', 'a.both.test'],
    ]);
    const seen = world.strict.sessions.filter((s) => s.messages.length > 0).map((s) => [s.clientAddress, s.ehlo]);
    expect(seen).toEqual(expect.arrayContaining([['127.0.0.2', 'mail.good.test'], ['127.0.0.6', 'a.both.test']]));
    expect(seen.some(([address]) => address === '127.0.0.3')).toBe(false);
    const leftOut = warnings.filter((w) => w.code === 'POOL_MEMBER_LEFT_OUT');
    expect(leftOut).toHaveLength(1);
    expect(leftOut[0]?.check).toMatchObject({ member: '127.0.0.3', code: 'FCRDNS_MISMATCH' });
  });

  it('reports every member: the top-level fields describe the first passing one', async () => {
    const report = await viaPool(pool('127.0.0.3', '127.0.0.2', '127.0.0.6')).preflight();
    expect(report).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test', destination: '127.0.0.100' });
    expect(report.members?.map((m) => [m.localAddress, m.ok, m.name])).toEqual([
      ['127.0.0.3', false, null],
      ['127.0.0.2', true, 'mail.good.test'],
      ['127.0.0.6', true, 'a.both.test'],
    ]);
    const fcrdns = report.checks.filter((c) => c.id === 'fcrdns').map((c) => [c.member, c.status, c.severity]);
    expect(fcrdns).toEqual([
      ['127.0.0.3', 'fail', 'warn'],
      ['127.0.0.2', 'pass', 'enforce'],
      ['127.0.0.6', 'warn', 'enforce'],
    ]);
  });

  it('with poolSticky, keeps one member per recipient domain', async () => {
    const transport = viaPool({ ...pool('127.0.0.2', '127.0.0.6'), poolSticky: true });
    const byDomain = new Map<string, Set<string>>();
    for (const to of ['a@example.test', 'b@sender.test', 'c@example.test', 'd@sender.test', 'e@example.test']) {
      const info = await transport.sendMail({ ...MESSAGE, to });
      const domain = to.split('@')[1] ?? '';
      byDomain.set(domain, (byDomain.get(domain) ?? new Set()).add(info.edge.address));
    }
    for (const addresses of byDomain.values()) expect(addresses.size).toBe(1);
  });
});

describe('a member whose DNS does not answer', () => {
  it('does not hold the sends of the confirmed members once they are known', async () => {
    world.dns.setFault('4.0.0.127.in-addr.arpa', { drop: true });
    try {
      const transport = world.transport({ host: 'smtp.relay.test', port: world.strict.port, edge: { ...pool('127.0.0.2', '127.0.0.4'), dns: { timeout: 2000 } } });
      // The first send has no verdict at all yet, and waits for both.
      expect((await transport.sendMail({ ...MESSAGE })).edge.address).toBe('127.0.0.2');
      const started = Date.now();
      for (let i = 0; i < 3; i++) expect((await transport.sendMail({ ...MESSAGE })).edge.address).toBe('127.0.0.2');
      // Waiting for the dropped member would cost a whole DNS timeout (2 s) per send.
      expect(Date.now() - started).toBeLessThan(1_900);
      const report = await transport.preflight();
      expect(report.members?.map((m) => [m.localAddress, m.ok])).toEqual([
        ['127.0.0.2', true],
        ['127.0.0.4', false],
      ]);
      expect(report.checks.find((c) => c.member === '127.0.0.4' && c.id === 'ptr')?.status).toBe('temperror');
    } finally {
      world.dns.clearFaults();
    }
  });
});

describe('a pool where every member fails', () => {
  it('refuses with every member\'s evidence, hands the message back, and connects nowhere', async () => {
    const transport = viaPool(pool('127.0.0.3', '127.0.0.4'));
    const mail = { ...MESSAGE };
    const err = await transport.sendMail(mail).then(
      () => {
        throw new Error('expected a refusal');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EdgeRefusedError);
    const refused = err as EdgeRefusedError;
    expect(refused.permanent).toBe(true);
    expect(refused.mail).toBe(mail);
    expect(refused.message).toMatch(/127\.0\.0\.3: .*; 127\.0\.0\.4: /);
    expect(refused.evidence.some((line) => line.startsWith('127.0.0.3: dig +short A mail.wrong.test'))).toBe(true);
    expect(refused.evidence.some((line) => line.startsWith('127.0.0.4: dig +short -x 127.0.0.4'))).toBe(true);
    expect(refused.report.members?.map((m) => m.ok)).toEqual([false, false]);
    expect(world.strict.connections).toBe(0);
  });

  it('fails preflight() with throwOnFailure', async () => {
    const options: MailedgeOptions = { host: 'smtp.relay.test', edge: { ...pool('127.0.0.3', '127.0.0.4'), dns: { servers: [world.dns.server] } } };
    await expect(preflight(options, { throwOnFailure: true })).rejects.toBeInstanceOf(PreflightFailedError);
  });
});

describe('options', () => {
  const invalid = (edge: unknown, extra: Partial<MailedgeOptions> = {}): string | undefined => {
    try {
      createTransport({ ...extra, edge: { ...(edge as object), dns: { servers: ['127.0.0.1:53'] } } }).close();
    } catch (err) {
      if (err instanceof InvalidOptionError) return err.option;
      throw err;
    }
    return undefined;
  };

  it('names the bad option', () => {
    expect(invalid({ pool: [] })).toBe('edge.pool');
    expect(invalid({ pool: [{ localAddress: 'nope' }] })).toBe('edge.pool[0].localAddress');
    expect(invalid({ pool: [{ localAddress: '127.0.0.2' }, {}] })).toBe('edge.pool[1].localAddress');
    expect(invalid({ pool: [{ localAddress: '127.0.0.2', publicAddress: '::1' }] })).toBe('edge.pool[0].publicAddress');
    expect(invalid({ pool: [{ localAddress: '127.0.0.2' }, { localAddress: '127.0.0.2' }] })).toBe('edge.pool[1].localAddress');
    expect(invalid({ pool: [{ localAddress: '127.0.0.2', bind: 1 }] })).toBe('edge.pool[0].bind');
    expect(invalid(pool('127.0.0.2'), { localAddress: '127.0.0.6' })).toBe('edge.pool');
    expect(invalid({ poolSticky: true })).toBe('edge.poolSticky');
    expect(invalid({ ...pool('127.0.0.2'), poolSticky: 'yes' })).toBe('edge.poolSticky');
    expect(invalid({ ...pool('127.0.0.2', '127.0.0.6'), poolSticky: true })).toBeUndefined();
  });
});

describe('mailedge check with several --local-address', () => {
  async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
    let stdout = '';
    const io: CliIo = {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: () => true },
      env: { NO_COLOR: '1' },
      cwd: mkdtempSync(join(tmpdir(), 'mailedge-pool-')),
    };
    return { code: await runCli(args, io), stdout };
  }

  it('prints one block per member and a summary line, and exits 0 while one member passes', async () => {
    const result = await cli(['check', '--local-address', '127.0.0.2', '--local-address', '127.0.0.3', '--host', 'smtp.relay.test', '--dns', world.dns.server]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('── pool member 127.0.0.2\nmailedge: 127.0.0.2 is confirmed as mail.good.test');
    expect(result.stdout).toContain('── pool member 127.0.0.3\nmailedge: 127.0.0.3: misconfigured');
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('mailedge pool: 1 of 2 members pass: 127.0.0.2 as mail.good.test; left out: 127.0.0.3 (FCRDNS_MISMATCH)');
  });

  it('--pool is the same, and --json lists every member beside the first passing one', async () => {
    const result = await cli(['check', '--pool', '127.0.0.4,127.0.0.6', '--dns', world.dns.server, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { schema: number; ok: boolean; address: string; members: Array<{ localAddress: string; ok: boolean }> };
    expect(report).toMatchObject({ schema: 1, ok: true, address: '127.0.0.6' });
    expect(report.members.map((m) => [m.localAddress, m.ok])).toEqual([
      ['127.0.0.4', false],
      ['127.0.0.6', true],
    ]);
  });

  it('exits 1 when every member fails', async () => {
    const result = await cli(['check', '--pool', '127.0.0.3 127.0.0.4', '--dns', world.dns.server]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('mailedge pool: 0 of 2 members pass: sending would be refused; failing: 127.0.0.3 (FCRDNS_MISMATCH), 127.0.0.4 (PTR_MISSING)');
  });
});
