import { describe, it, expect, afterEach } from 'vitest';
import { createSocket } from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, isIPv6, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Rcode,
  RecordType,
  buildQuery,
  decodeMessage,
  encodeMessage,
  nameKey,
  nameToLabels,
  type DnsMessage,
  type ResourceRecord,
} from '../src/dns/wire.js';
import { startDnsServer, type DnsServerOptions, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { ZoneParseError, loadZoneFiles, parseZone } from '../src/testing/zone.js';

// ---------------------------------------------------------------- fixtures

const ZONE = `
$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster (
                2024010101 ; serial
                2h         ; refresh
                30m        ; retry
                1w         ; expire
                300 )      ; negative-caching TTL
        IN NS  ns1
ns1          A     192.0.2.53
mail    300  IN A  192.0.2.10
mail    IN 300 AAAA 2001:DB8::10
@            MX 10 mail
             MX 20 backup.example.net.
@            TXT "v=spf1 ip4:192.0.2.0/24 -all"
alias        CNAME alias2
alias2       CNAME mail
loop1        CNAME loop2
loop2        CNAME loop1
out          CNAME elsewhere.invalid.
dangling     CNAME missing
deep.sub.empty A 192.0.2.99 ; sub.empty is an empty non-terminal
fail         A     192.0.2.66
café         A     192.0.2.77

$ORIGIN 2.0.192.in-addr.arpa.
@  3600 SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
10 PTR mail.example.test.
10 PTR second.example.test.
10 PTR third.example.test.
20 PTR evil\\.example.com.
21 PTR bad\\013\\010x.example.com.
`;

const servers: FixtureDnsServer[] = [];

async function start(options: DnsServerOptions = { zone: ZONE }): Promise<FixtureDnsServer> {
  const server = await startDnsServer(options);
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function resolverFor(server: FixtureDnsServer, options = { timeout: 1000, tries: 2 }): dnsPromises.Resolver {
  const resolver = new dnsPromises.Resolver(options);
  resolver.setServers([server.server]);
  return resolver;
}

// ---------------------------------------------------------------- raw clients

let nextId = 0x1000;

async function udpExchange(server: FixtureDnsServer, packet: Buffer, timeoutMs = 1000): Promise<Buffer | undefined> {
  const socket = createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
  try {
    return await new Promise<Buffer | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      socket.once('message', (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.send(packet, server.port, server.host);
    });
  } finally {
    socket.close();
  }
}

async function udpQuery(server: FixtureDnsServer, name: string, type: number): Promise<{ raw: Buffer; message: DnsMessage }> {
  const id = nextId++;
  const raw = await udpExchange(server, buildQuery(id, name, type));
  if (!raw) throw new Error(`no UDP answer for ${name}`);
  const message = decodeMessage(raw);
  expect(message.id).toBe(id);
  return { raw, message };
}

function frame(packet: Buffer): Buffer {
  const out = Buffer.alloc(2 + packet.length);
  out.writeUInt16BE(packet.length, 0);
  packet.copy(out, 2);
  return out;
}

/** Opens a TCP connection, lets `write` send bytes however it likes, collects `expected` framed replies. */
async function tcpExchange(
  server: FixtureDnsServer,
  expected: number,
  write: (socket: Socket) => Promise<void> | void,
): Promise<Buffer[]> {
  const socket = connect({ host: server.host, port: server.port });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const replies: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      let pending = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error(`only ${replies.length}/${expected} TCP replies`)), 2000);
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          const length = pending.readUInt16BE(0);
          replies.push(pending.subarray(2, 2 + length));
          pending = pending.subarray(2 + length);
        }
        if (replies.length >= expected) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await write(socket);
    await done;
    return replies;
  } finally {
    socket.destroy();
  }
}

async function tcpQuery(server: FixtureDnsServer, name: string, type: number): Promise<DnsMessage> {
  const id = nextId++;
  const [reply] = await tcpExchange(server, 1, (socket) => {
    socket.write(frame(buildQuery(id, name, type)));
  });
  if (!reply) throw new Error('no TCP reply');
  const message = decodeMessage(reply);
  expect(message.id).toBe(id);
  return message;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function manyPtrs(owner: string, count: number): ResourceRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    name: owner,
    ttl: 60,
    class: 1,
    type: 'PTR' as const,
    target: `host-${i}.example.test`,
  }));
}

// ---------------------------------------------------------------- zone parser

describe('parseZone', () => {
  it('resolves $ORIGIN, $TTL, @, relative and absolute names, keeping case and no trailing dot', () => {
    const records = parseZone(
      [
        '$ORIGIN Example.COM.',
        '$TTL 600',
        '@ A 192.0.2.1',
        'www CNAME @',
        'abs.example.net. A 192.0.2.2',
        '$ORIGIN sub ; relative to the current origin',
        'x PTR target',
      ].join('\n'),
    );
    expect(records).toEqual([
      { name: 'Example.COM', ttl: 600, class: 1, type: 'A', address: '192.0.2.1' },
      { name: 'www.Example.COM', ttl: 600, class: 1, type: 'CNAME', target: 'Example.COM' },
      { name: 'abs.example.net', ttl: 600, class: 1, type: 'A', address: '192.0.2.2' },
      { name: 'x.sub.Example.COM', ttl: 600, class: 1, type: 'PTR', target: 'target.sub.Example.COM' },
    ]);
    expect(nameKey(records[0]?.name ?? '')).toBe(nameKey('example.com.'));
  });

  it('takes origin and default TTL from options', () => {
    expect(parseZone('mail A 192.0.2.1', { origin: 'example.org', defaultTtl: 42 })).toEqual([
      { name: 'mail.example.org', ttl: 42, class: 1, type: 'A', address: '192.0.2.1' },
    ]);
    expect(parseZone('@ A 192.0.2.1', { origin: 'example.org.' })[0]?.name).toBe('example.org');
  });

  it('parses a multi-line SOA with comments inside the parentheses', () => {
    const [soa] = parseZone(
      [
        '$TTL 1d',
        'example.com. IN SOA ns1.example.com. hostmaster.example.com. ( ; comment (with parens)',
        '    2024010101 ; serial',
        '    7200       ; refresh',
        '    1h         ; retry',
        '    2w         ; expire',
        '    5m )       ; minimum',
      ].join('\n'),
    );
    expect(soa).toEqual({
      name: 'example.com',
      ttl: 86400,
      class: 1,
      type: 'SOA',
      mname: 'ns1.example.com',
      rname: 'hostmaster.example.com',
      serial: 2024010101,
      refresh: 7200,
      retry: 3600,
      expire: 1209600,
      minimum: 300,
    });
  });

  it('reads TTL units and TTL/class in either order, and blank owners', () => {
    const records = parseZone(
      [
        '$ORIGIN example.com.',
        'a 1h IN A 192.0.2.1',
        'b IN 30m A 192.0.2.2',
        'c 1d A 192.0.2.3',
        'd 1W A 192.0.2.4',
        'e 1h30m A 192.0.2.5',
        '  IN 2H AAAA 2001:db8::5',
        '\tTXT "blank owner after a tab"',
      ].join('\n'),
    );
    expect(records.map((r) => [r.name, r.ttl, r.type])).toEqual([
      ['a.example.com', 3600, 'A'],
      ['b.example.com', 1800, 'A'],
      ['c.example.com', 86400, 'A'],
      ['d.example.com', 604800, 'A'],
      ['e.example.com', 5400, 'A'],
      ['e.example.com', 7200, 'AAAA'],
      // No $TTL: the last explicit TTL carries over (RFC 1035 section 5.1).
      ['e.example.com', 7200, 'TXT'],
    ]);
  });

  it('parses TXT strings: several per record, quotes, escapes, semicolons inside quotes', () => {
    const [txt, bytes] = parseZone(
      [
        'example.com. TXT "v=spf1 -all" "say \\"hi\\"" "semi;colon" unquoted ; real comment',
        'example.com. TXT "\\065\\\\x" ( "split"',
        '  "over lines" )',
      ].join('\n'),
    );
    expect(txt).toMatchObject({ type: 'TXT', strings: ['v=spf1 -all', 'say "hi"', 'semi;colon', 'unquoted'] });
    expect(bytes).toMatchObject({ type: 'TXT', strings: ['A\\x', 'split', 'over lines'] });
  });

  it('keeps escaped names in presentation form, byte for byte', () => {
    const records = parseZone(
      [
        '$ORIGIN 2.0.192.in-addr.arpa.',
        '20 PTR evil\\.example.com.',
        '21 PTR bad\\013\\010x.example.com.',
        '22 PTR \\065bc.example.com.',
        '23 PTR café.example.com.',
        'back\\\\slash\\.dot PTR x.example.com.',
      ].join('\n'),
    );
    const targets = records.map((r) => (r.type === 'PTR' ? r.target : ''));
    expect(targets[0]).toBe('evil\\.example.com');
    expect(nameToLabels(targets[0] ?? '')).toEqual([Buffer.from('evil.example'), Buffer.from('com')]);
    expect(targets[1]).toBe('bad\\013\\010x.example.com');
    expect(nameToLabels(targets[1] ?? '')[0]).toEqual(Buffer.from('bad\r\nx', 'latin1'));
    expect(targets[2]).toBe('Abc.example.com');
    // Raw non-ASCII is kept as its UTF-8 bytes, written the way the decoder writes them.
    expect(targets[3]).toBe('caf\\195\\169.example.com');
    expect(nameToLabels(targets[3] ?? '')[0]).toEqual(Buffer.from('café', 'utf8'));
    expect(records[4]?.name).toBe('back\\\\slash\\.dot.2.0.192.in-addr.arpa');
    // An escaped backslash before the root dot: that dot is still the root.
    expect(parseZone('a\\\\. A 192.0.2.1')[0]?.name).toBe('a\\\\');
    expect(nameKey('A\\\\.')).toBe(nameKey('a\\\\'));
    expect(nameKey('a\\.')).not.toBe(nameKey('a'));
  });

  it('reports errors with the line number', () => {
    const bad = (text: string): unknown => {
      try {
        parseZone(text, { origin: 'example.com' });
      } catch (err) {
        return err;
      }
      throw new Error('expected a parse error');
    };
    const unknown = bad('a A 192.0.2.1\n\n_sip._tcp SRV 0 5 5060 sip');
    expect(unknown).toBeInstanceOf(ZoneParseError);
    expect(unknown).toBeInstanceOf(Error);
    expect((unknown as ZoneParseError).line).toBe(3);
    expect(String(unknown)).toMatch(/line 3.*SRV.*_sip\._tcp SRV 0 5 5060 sip/);

    expect(String(bad('a A 192.0.2.1\nb A 300.1.1.1'))).toMatch(/line 2: bad A address/);
    expect(String(bad('a MX mail'))).toMatch(/line 1: bad MX preference/);
    expect(String(bad('\n@ SOA ns hm ( 1 2 3 4\n 5\n'))).toMatch(/line 2: "\(" is never closed/);
    expect(String(bad('a TXT "open'))).toMatch(/line 1: unterminated quoted string/);
    expect(String(bad('  A 192.0.2.1'))).toMatch(/line 1: .*no previous owner/);
    expect(String(bad('a CH A 192.0.2.1'))).toMatch(/line 1: unsupported class CH/);
    expect(String(bad('$INCLUDE other.zone'))).toMatch(/line 1: unsupported directive \$INCLUDE/);
    expect(String(bad('a A 192.0.2.1 extra'))).toMatch(/line 1: unexpected "extra"/);
    expect(String(bad(`${'x'.repeat(64)} A 192.0.2.1`))).toMatch(/line 1: bad name/);
    const long = Array.from({ length: 4 }, () => 'y'.repeat(63)).join('.');
    expect(String(bad(`ok A 192.0.2.1\n${long}. A 192.0.2.1`))).toMatch(/line 2: bad name.*longer than 255/);
    expect(() => parseZone('relative A 192.0.2.1')).toThrow(/line 1: relative name "relative" but no \$ORIGIN/);
  });

  it('loads zone files, naming the file in errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailedge-zone-'));
    try {
      const good = join(dir, 'good.zone');
      const broken = join(dir, 'broken.zone');
      await writeFile(good, '$ORIGIN example.com.\nmail A 192.0.2.1\n');
      await writeFile(broken, 'ok.example.com. A 192.0.2.2\nbad.example.com. HINFO x y\n');
      expect(await loadZoneFiles([good])).toEqual([
        { name: 'mail.example.com', ttl: 3600, class: 1, type: 'A', address: '192.0.2.1' },
      ]);
      await expect(loadZoneFiles([good, broken])).rejects.toThrow(/broken\.zone: line 2: .*HINFO/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------- server, through Node's resolver

describe('startDnsServer with Node’s resolver', () => {
  it('answers A, AAAA, MX, TXT and PTR', async () => {
    const server = await start();
    expect(server.server).toBe(`127.0.0.1:${server.port}`);
    const resolver = resolverFor(server);
    expect(await resolver.resolve4('mail.example.test')).toEqual(['192.0.2.10']);
    expect(await resolver.resolve6('MAIL.example.test')).toEqual(['2001:db8::10']);
    expect(await resolver.resolveMx('example.test')).toEqual([
      { exchange: 'mail.example.test', priority: 10 },
      { exchange: 'backup.example.net', priority: 20 },
    ]);
    expect(await resolver.resolveTxt('example.test')).toEqual([['v=spf1 ip4:192.0.2.0/24 -all']]);
    expect(await resolver.resolvePtr('10.2.0.192.in-addr.arpa')).toEqual([
      'mail.example.test',
      'second.example.test',
      'third.example.test',
    ]);
    expect(await resolver.reverse('192.0.2.10')).toContain('mail.example.test');
    expect(server.queries).toBeGreaterThanOrEqual(6);
  });

  it('follows CNAME chains', async () => {
    const server = await start();
    const resolver = resolverFor(server);
    expect(await resolver.resolve4('alias.example.test')).toEqual(['192.0.2.10']);
    expect(await resolver.resolveCname('alias.example.test')).toEqual(['alias2.example.test']);
  });

  it('tells NXDOMAIN (ENOTFOUND) from NODATA (ENODATA)', async () => {
    const server = await start();
    const resolver = resolverFor(server);
    await expect(resolver.resolve4('nope.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(resolver.resolve6('ns1.example.test')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(resolver.resolve4('sub.empty.example.test')).rejects.toMatchObject({ code: 'ENODATA' });
  });

  it('injects SERVFAIL, REFUSED and NXDOMAIN faults, limited by type', async () => {
    const server = await start({
      zone: ZONE,
      faults: { 'FAIL.example.test': { rcode: 'SERVFAIL' } },
    });
    const resolver = resolverFor(server, { timeout: 500, tries: 1 });
    await expect(resolver.resolve4('fail.example.test')).rejects.toMatchObject({ code: 'ESERVFAIL' });

    server.setFault('fail.example.test', { rcode: 'REFUSED' });
    await expect(resolver.resolve4('fail.example.test')).rejects.toMatchObject({ code: 'EREFUSED' });

    server.setFault('mail.example.test.', { rcode: 'NXDOMAIN', types: ['AAAA'] });
    expect(await resolver.resolve4('mail.example.test')).toEqual(['192.0.2.10']);
    await expect(resolver.resolve6('mail.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });

    server.setFault('fail.example.test', undefined);
    server.setFault('mail.example.test', undefined);
    expect(await resolver.resolve4('fail.example.test')).toEqual(['192.0.2.66']);
    expect(await resolver.resolve6('mail.example.test')).toEqual(['2001:db8::10']);
  });

  it('drops queries so the resolver times out, and still counts them', async () => {
    const server = await start({ zone: ZONE, faults: { 'mail.example.test': { drop: true } } });
    const resolver = resolverFor(server, { timeout: 200, tries: 1 });
    await expect(resolver.resolve4('mail.example.test')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    expect(server.queries).toBeGreaterThanOrEqual(1);
    expect(server.log[0]).toMatchObject({ name: 'mail.example.test', type: 'A', transport: 'udp' });
  });

  it('delays answers and applies the default fault to every name', async () => {
    const server = await start({ zone: ZONE, defaultFault: { delayMs: 150 } });
    const begun = Date.now();
    const { message } = await udpQuery(server, 'ns1.example.test', RecordType.A);
    expect(Date.now() - begun).toBeGreaterThanOrEqual(140);
    expect(message.answers).toHaveLength(1);

    server.setDefaultFault({ rcode: 'SERVFAIL', types: ['MX'] });
    await expect(resolverFor(server, { timeout: 500, tries: 1 }).resolveMx('example.test')).rejects.toMatchObject({
      code: 'ESERVFAIL',
    });
    const quick = Date.now();
    await udpQuery(server, 'ns1.example.test', RecordType.A);
    expect(Date.now() - quick).toBeLessThan(140);
  });

  it('truncates a 300-PTR answer over UDP and serves all of it over TCP', async () => {
    const owner = '1.2.0.192.in-addr.arpa';
    const server = await start({ zone: ZONE, records: manyPtrs(owner, 300) });

    const { raw, message } = await udpQuery(server, owner, RecordType.PTR);
    expect(raw.length).toBeLessThanOrEqual(512);
    expect(message.truncated).toBe(true);
    expect(message.answers.length).toBeLessThan(300);

    const overTcp = await tcpQuery(server, owner, RecordType.PTR);
    expect(overTcp.truncated).toBe(false);
    expect(overTcp.answers.map((r) => (r.type === 'PTR' ? r.target : ''))).toEqual(
      manyPtrs(owner, 300).map((r) => (r.type === 'PTR' ? r.target : '')),
    );

    server.resetStats();
    const names = await resolverFor(server).resolvePtr(owner);
    expect(names).toHaveLength(300);
    expect(new Set(names).size).toBe(300);
    const transports = server.log.filter((e) => e.name === owner).map((e) => e.transport);
    expect(transports).toContain('udp');
    expect(transports).toContain('tcp');
  });

  it('forces TCP with the truncate fault', async () => {
    const server = await start({ zone: ZONE, faults: { 'mail.example.test': { truncate: true } } });
    const { message } = await udpQuery(server, 'mail.example.test', RecordType.A);
    expect(message.truncated).toBe(true);
    expect(message.answers).toEqual([]);
    expect((await tcpQuery(server, 'mail.example.test', RecordType.A)).answers).toHaveLength(1);

    server.resetStats();
    expect(await resolverFor(server).resolve4('mail.example.test')).toEqual(['192.0.2.10']);
    expect(server.log.map((e) => e.transport)).toEqual(['udp', 'tcp']);
  });

  it('works on the IPv6 loopback', async () => {
    const server = await start({ zone: ZONE, host: '::1' });
    expect(server.host).toBe('::1');
    expect(server.server).toBe(`[::1]:${server.port}`);
    expect(await resolverFor(server).resolve4('mail.example.test')).toEqual(['192.0.2.10']);
    expect((await udpQuery(server, 'mail.example.test', RecordType.AAAA)).message.answers).toHaveLength(1);
    expect((await tcpQuery(server, 'example.test', RecordType.MX)).answers).toHaveLength(2);
  });
});

// ---------------------------------------------------------------- server, on the wire

describe('startDnsServer on the wire', () => {
  it('answers authoritatively, echoing id, RD and the question as asked', async () => {
    const server = await start();
    const { message } = await udpQuery(server, 'MAIL.Example.TEST', RecordType.A);
    expect(message).toMatchObject({
      response: true,
      authoritative: true,
      recursionDesired: true,
      recursionAvailable: true,
      truncated: false,
      rcode: Rcode.NOERROR,
      questions: [{ name: 'MAIL.Example.TEST', type: RecordType.A, class: 1 }],
    });
    // What goes out on the wire is exactly what the zone parser produced.
    const parsed = parseZone(ZONE).find((r) => r.name === 'mail.example.test' && r.type === 'A');
    expect(message.answers).toEqual([parsed]);
  });

  it('serves several PTRs in zone order', async () => {
    const server = await start();
    const { message } = await udpQuery(server, '10.2.0.192.in-addr.arpa', RecordType.PTR);
    expect(message.answers.map((r) => (r.type === 'PTR' ? r.target : ''))).toEqual([
      'mail.example.test',
      'second.example.test',
      'third.example.test',
    ]);
  });

  it('follows CNAME chains, stops at loops and at names outside the zones', async () => {
    const server = await start();
    const chain = (await udpQuery(server, 'alias.example.test', RecordType.A)).message;
    expect(chain.rcode).toBe(Rcode.NOERROR);
    expect(chain.answers.map((r) => [r.name, r.type])).toEqual([
      ['alias.example.test', 'CNAME'],
      ['alias2.example.test', 'CNAME'],
      ['mail.example.test', 'A'],
    ]);

    const loop = (await udpQuery(server, 'loop1.example.test', RecordType.A)).message;
    expect(loop.rcode).toBe(Rcode.NOERROR);
    expect(loop.answers.map((r) => r.name)).toEqual(['loop1.example.test', 'loop2.example.test']);

    const out = (await udpQuery(server, 'out.example.test', RecordType.A)).message;
    expect(out.rcode).toBe(Rcode.NOERROR);
    expect(out.answers).toHaveLength(1);

    // The target is inside our zone and does not exist: NXDOMAIN with the CNAME (RFC 6604).
    const dangling = (await udpQuery(server, 'dangling.example.test', RecordType.A)).message;
    expect(dangling.rcode).toBe(Rcode.NXDOMAIN);
    expect(dangling.answers.map((r) => r.type)).toEqual(['CNAME']);

    // Asking for the CNAME itself does not follow it.
    const direct = (await udpQuery(server, 'alias.example.test', RecordType.CNAME)).message;
    expect(direct.answers.map((r) => r.type)).toEqual(['CNAME']);
  });

  it('puts the SOA in the authority section of negative answers, TTL capped by its minimum', async () => {
    const server = await start();
    const nx = (await udpQuery(server, 'nope.example.test', RecordType.A)).message;
    expect(nx.rcode).toBe(Rcode.NXDOMAIN);
    expect(nx.authoritative).toBe(true);
    expect(nx.answers).toEqual([]);
    expect(nx.authorities).toMatchObject([{ name: 'example.test', type: 'SOA', ttl: 300, minimum: 300 }]);

    const nodata = (await udpQuery(server, 'sub.empty.example.test', RecordType.A)).message;
    expect(nodata.rcode).toBe(Rcode.NOERROR);
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities).toMatchObject([{ name: 'example.test', type: 'SOA' }]);

    const reverse = (await udpQuery(server, '99.2.0.192.in-addr.arpa', RecordType.PTR)).message;
    expect(reverse.authorities).toMatchObject([{ name: '2.0.192.in-addr.arpa', type: 'SOA', ttl: 60 }]);

    const nowhere = (await udpQuery(server, 'host.invalid', RecordType.A)).message;
    expect(nowhere.rcode).toBe(Rcode.NXDOMAIN);
    expect(nowhere.authorities).toEqual([]);
  });

  it('serves names with an escaped dot and with CR LF byte for byte', async () => {
    const server = await start();
    const evil = await udpQuery(server, '20.2.0.192.in-addr.arpa', RecordType.PTR);
    const [evilPtr] = evil.message.answers;
    expect(evilPtr).toMatchObject({ type: 'PTR', target: 'evil\\.example.com' });
    // One 12-octet label "evil.example", then "com": not the three labels a naive codec would produce.
    expect(evil.raw.includes(Buffer.from('\x0cevil.example\x03com\x00', 'latin1'))).toBe(true);

    const crlf = await udpQuery(server, '21.2.0.192.in-addr.arpa', RecordType.PTR);
    expect(crlf.message.answers[0]).toMatchObject({ type: 'PTR', target: 'bad\\013\\010x.example.com' });
    expect(crlf.raw.includes(Buffer.from('\x06bad\r\nx\x07example\x03com\x00', 'latin1'))).toBe(true);
  });

  it('serves a name written with raw non-ASCII as UTF-8', async () => {
    const server = await start();
    const { message, raw } = await udpQuery(server, 'café.example.test', RecordType.A);
    expect(message.answers).toMatchObject([{ name: 'caf\\195\\169.example.test', address: '192.0.2.77' }]);
    expect(raw.includes(Buffer.from('\x05café', 'utf8'))).toBe(true);
  });

  it('ignores an OPT record and keeps UDP answers within 512 octets', async () => {
    const owner = '1.2.0.192.in-addr.arpa';
    const server = await start({ records: manyPtrs(owner, 300) });
    const query = encodeMessage({
      ...decodeMessage(buildQuery(7, owner, RecordType.PTR)),
      additionals: [{ name: '.', type: 'OTHER', typeCode: RecordType.OPT, class: 4096, ttl: 0, raw: Buffer.alloc(0) }],
    });
    const raw = await udpExchange(server, query);
    expect(raw?.length).toBeLessThanOrEqual(512);
    const message = decodeMessage(raw ?? Buffer.alloc(0));
    expect(message.truncated).toBe(true);
    expect(message.additionals).toEqual([]);
  });

  it('handles TCP queries split across writes and several per connection', async () => {
    const server = await start();
    const a = frame(buildQuery(101, 'mail.example.test', RecordType.A));
    const b = frame(buildQuery(102, 'example.test', RecordType.MX));
    const c = frame(buildQuery(103, 'nope.example.test', RecordType.A));
    const replies = await tcpExchange(server, 3, async (socket) => {
      const bytes = Buffer.concat([a, b, c]);
      // Byte by byte through the first query, then the rest in one go.
      for (let i = 0; i < a.length; i++) {
        socket.write(bytes.subarray(i, i + 1));
        if (i % 8 === 0) await sleep(1);
      }
      socket.write(bytes.subarray(a.length));
    });
    const messages = replies.map((r) => decodeMessage(r));
    expect(messages.map((m) => [m.id, m.rcode, m.answers.length])).toEqual([
      [101, Rcode.NOERROR, 1],
      [102, Rcode.NOERROR, 2],
      [103, Rcode.NXDOMAIN, 0],
    ]);
    expect(server.log.map((e) => e.transport)).toEqual(['tcp', 'tcp', 'tcp']);
  });

  it('answers malformed queries with FORMERR, ignores headerless ones, and keeps serving', async () => {
    const server = await start();
    expect(await udpExchange(server, Buffer.from([1, 2, 3, 4, 5]), 200)).toBeUndefined();

    // A header promising one question, followed by a label that runs off the end.
    const broken = Buffer.concat([buildQuery(0xbeef, 'x', RecordType.A).subarray(0, 12), Buffer.from([9, 0x61])]);
    const reply = await udpExchange(server, broken);
    expect(reply).toBeDefined();
    const formerr = decodeMessage(reply ?? Buffer.alloc(0));
    expect(formerr).toMatchObject({ id: 0xbeef, response: true, rcode: Rcode.FORMERR, recursionDesired: true });

    const [tcpReply] = await tcpExchange(server, 1, (socket) => {
      socket.write(frame(broken));
    });
    expect(decodeMessage(tcpReply ?? Buffer.alloc(0)).rcode).toBe(Rcode.FORMERR);

    expect((await udpQuery(server, 'mail.example.test', RecordType.A)).message.answers).toHaveLength(1);
    expect(server.queries).toBe(3);
  });

  it('logs every query and resets its statistics', async () => {
    const server = await start({ zone: ZONE, faults: { 'fail.example.test': { drop: true } } });
    const before = Date.now();
    await udpQuery(server, 'mail.example.test', RecordType.AAAA);
    await tcpQuery(server, 'Example.Test', RecordType.TXT);
    expect(await udpExchange(server, buildQuery(1, 'fail.example.test', RecordType.A), 100)).toBeUndefined();
    expect(server.queries).toBe(3);
    expect(server.log).toEqual([
      { name: 'mail.example.test', type: 'AAAA', transport: 'udp', at: expect.any(Number) },
      { name: 'Example.Test', type: 'TXT', transport: 'tcp', at: expect.any(Number) },
      { name: 'fail.example.test', type: 'A', transport: 'udp', at: expect.any(Number) },
    ]);
    expect(server.log[0]?.at).toBeGreaterThanOrEqual(before);
    server.resetStats();
    expect(server.queries).toBe(0);
    expect(server.log).toEqual([]);
  });

  it('replaces its records live', async () => {
    const server = await start();
    server.setRecords(parseZone('mail.example.test. 60 A 198.51.100.1'));
    const { message } = await udpQuery(server, 'mail.example.test', RecordType.A);
    expect(message.answers).toMatchObject([{ address: '198.51.100.1', ttl: 60 }]);
    expect(() => server.setRecords([{ name: 'x.test', ttl: 1, class: 1, type: 'A', address: 'nope' }])).toThrow(
      /cannot serve A record/,
    );
  });

  it('closes idempotently, cancelling delayed replies and open TCP connections', async () => {
    const server = await startDnsServer({ zone: ZONE, defaultFault: { delayMs: 10_000 } });
    try {
      const socket = connect({ host: server.host, port: server.port });
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write(frame(buildQuery(5, 'mail.example.test', RecordType.A)));
      const udpReply = udpExchange(server, buildQuery(6, 'mail.example.test', RecordType.A), 500);
      await sleep(50);

      const begun = Date.now();
      await Promise.all([server.close(), server.close()]);
      await server.close();
      expect(Date.now() - begun).toBeLessThan(1000);
      await closedByServer;
      expect(await udpReply).toBeUndefined();
      expect(server.queries).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('binds loopback only', async () => {
    await expect(startDnsServer({ host: '0.0.0.0' })).rejects.toThrow(/loopback only/);
  });
});

// RFC 4592 section 2.2.1's example zone (SRV and delegation left out), and its answers.
const WILDCARD_ZONE = `
$ORIGIN example.
$TTL 3600
@                  SOA   ns.example.com. hostmaster.example.com. 1 3600 600 86400 300
*                  TXT   "this is a wildcard"
*                  MX    10 host1.example.
sub.*              TXT   "this is not a wildcard"
host1              A     192.0.2.1
_ssh._tcp.host1    TXT   "service"
alias              CNAME nothere.example.
$ORIGIN bulk.test.
@                  SOA   ns.bulk.test. hostmaster.bulk.test. 1 3600 600 86400 60
*                  MX    10 mx.bulk.test.
mx                 A     127.0.0.1
`;

describe('wildcards (RFC 4592)', () => {
  it('synthesises records for a name that does not exist, owned by the name asked for', async () => {
    const server = await start({ zone: WILDCARD_ZONE });
    const mx = (await udpQuery(server, 'Host3.example', RecordType.MX)).message;
    expect(mx.rcode).toBe(Rcode.NOERROR);
    expect(mx.answers).toMatchObject([{ name: 'Host3.example', type: 'MX', preference: 10, exchange: 'host1.example', ttl: 3600 }]);
    // A wildcard covers names any number of labels below its closest encloser.
    const txt = (await udpQuery(server, 'foo.bar.example', RecordType.TXT)).message;
    expect(txt.answers).toMatchObject([{ name: 'foo.bar.example', type: 'TXT' }]);
    // Node's resolver sees an ordinary answer.
    expect(await resolverFor(server).resolveMx('d12345.bulk.test')).toEqual([{ priority: 10, exchange: 'mx.bulk.test' }]);
  });

  it('answers NODATA with the SOA when the wildcard has no record of the type asked', async () => {
    const server = await start({ zone: WILDCARD_ZONE });
    const a = (await udpQuery(server, 'host3.example', RecordType.A)).message;
    expect(a.rcode).toBe(Rcode.NOERROR);
    expect(a.answers).toEqual([]);
    expect(a.authorities).toMatchObject([{ name: 'example', type: 'SOA' }]);
  });

  it('does not apply to names that exist, empty non-terminals included', async () => {
    const server = await start({ zone: WILDCARD_ZONE });
    const host1 = (await udpQuery(server, 'host1.example', RecordType.MX)).message;
    expect([host1.rcode, host1.answers]).toEqual([Rcode.NOERROR, []]);
    // _tcp.host1.example exists only as an empty non-terminal: still no wildcard there.
    const tcp = (await udpQuery(server, '_tcp.host1.example', RecordType.MX)).message;
    expect([tcp.rcode, tcp.answers]).toEqual([Rcode.NOERROR, []]);
    const wildcardItself = (await udpQuery(server, 'sub.*.example', RecordType.MX)).message;
    expect([wildcardItself.rcode, wildcardItself.answers]).toEqual([Rcode.NOERROR, []]);
  });

  it('is blocked below a closest encloser that has no wildcard of its own', async () => {
    const server = await start({ zone: WILDCARD_ZONE });
    // Closest encloser _tcp.host1.example: no *._tcp.host1.example, so NXDOMAIN, not *.example.
    const telnet = (await udpQuery(server, '_telnet._tcp.host1.example', RecordType.TXT)).message;
    expect(telnet.rcode).toBe(Rcode.NXDOMAIN);
    expect(telnet.answers).toEqual([]);
    // Closest encloser *.example itself: *.*.example does not exist.
    const ghost = (await udpQuery(server, 'ghost.*.example', RecordType.MX)).message;
    expect(ghost.rcode).toBe(Rcode.NXDOMAIN);
  });

  it('answers the target of a CNAME from a wildcard', async () => {
    const server = await start({ zone: WILDCARD_ZONE });
    const chain = (await udpQuery(server, 'alias.example', RecordType.MX)).message;
    expect(chain.answers.map((r) => [r.name, r.type])).toEqual([
      ['alias.example', 'CNAME'],
      ['nothere.example', 'MX'],
    ]);
  });
});

describe('robustness', () => {
  it('survives garbage and mutated queries over UDP and TCP', async () => {
    const server = await start();
    const valid = buildQuery(0x4242, 'mail.example.test', RecordType.A);
    // Deterministic pseudo-random mutations: reproducible failures beat wider coverage here.
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const packets: Buffer[] = [];
    for (let i = 0; i < 150; i++) {
      const packet = Buffer.from(valid.subarray(0, 12 + random(valid.length)));
      for (let j = random(6); j > 0; j--) packet[random(packet.length)] = random(256);
      packet[2] = (packet[2] ?? 0) & 0x7f; // keep it a query so the server must look at it
      packets.push(packet);
    }
    const socket = createSocket('udp4');
    try {
      for (const packet of packets) socket.send(packet, server.port, server.host);
      await sleep(100);
    } finally {
      socket.close();
    }
    // Every one has a readable header, so every one gets some answer (FORMERR, NOTIMP, ...).
    const replies = await tcpExchange(server, packets.length, (tcp) => {
      tcp.write(Buffer.concat(packets.map(frame)));
    });
    expect(replies).toHaveLength(packets.length);
    expect((await udpQuery(server, 'mail.example.test', RecordType.A)).message.answers).toHaveLength(1);
    expect((await tcpQuery(server, 'mail.example.test', RecordType.A)).answers).toHaveLength(1);
  });

  it('rejects bad zone text only with ZoneParseError', () => {
    const pieces = ['a', '@', '$TTL', '$ORIGIN', 'IN', 'A', 'TXT', 'SOA', 'MX', '1h', '(', ')', '"x', '"', ';', '\\', '\\0', '\n', ' ', '\t', '.', '192.0.2.1', '::1', 'é'];
    let seed = 99;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 2000; i++) {
      let text = '';
      for (let j = random(12); j >= 0; j--) text += pieces[random(pieces.length)] + (random(2) ? ' ' : '');
      try {
        parseZone(text, { origin: 'example.com' });
      } catch (err) {
        if (!(err instanceof ZoneParseError)) throw new Error(`${String(err)} for ${JSON.stringify(text)}`);
        expect(err.message).toMatch(/^line \d+: /);
      }
    }
  });
});

describe('the shipped world zone', () => {
  it('parses and serves fixtures/zones/world.zone', async () => {
    const { WORLD_ZONE_FILE } = await import('../src/testing/fixtures.js');
    const server = await start({ zoneFiles: [WORLD_ZONE_FILE] });
    const resolver = resolverFor(server);
    expect(await resolver.resolvePtr('5.0.0.127.in-addr.arpa')).toEqual(['mail.multi.test', 'old.multi.test']);
    expect(await resolver.resolve4('relay-alias.test')).toEqual(['127.0.0.100']);
    const crlf = await udpQuery(server, '8.0.0.127.in-addr.arpa', RecordType.PTR);
    expect(crlf.message.answers).toMatchObject([{ target: 'mail\\013\\010rset.good.test' }]);
    const evil = await udpQuery(server, '11.0.0.127.in-addr.arpa', RecordType.PTR);
    expect(evil.message.answers).toMatchObject([{ target: 'evil\\.mail\\032x.good.test' }]);
    expect(evil.raw.includes(Buffer.from('\x0bevil.mail x\x04good\x04test\x00', 'latin1'))).toBe(true);
    const v6 = await udpQuery(server, '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa', RecordType.PTR);
    expect(v6.message.answers).toMatchObject([{ target: 'v6.good.test' }]);
    const none = await udpQuery(server, '4.0.0.127.in-addr.arpa', RecordType.PTR);
    expect(none.message.rcode).toBe(Rcode.NXDOMAIN);
    expect(none.message.authorities).toMatchObject([{ name: '127.in-addr.arpa', type: 'SOA', ttl: 60 }]);
  });
});
