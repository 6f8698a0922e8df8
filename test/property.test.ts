import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFcrdns } from '../src/checks/fcrdns.js';
import { hostnameProblem } from '../src/checks/hostname.js';
import { Resolver, systemClock } from '../src/dns/resolver.js';
import { parseServer } from '../src/dns/servers.js';
import {
  WireFormatError,
  decodeMessage,
  encodeMessage,
  labelsToName,
  nameToLabels,
  type DnsMessage,
  type ResourceRecord,
} from '../src/dns/wire.js';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';

// ---------------------------------------------------------------- 1. hostnameProblem

/**
 * Deliberately written without regexes or the order of checks in hostname.ts, so
 * a shared mistake is unlikely: a name is acceptable exactly when every rule holds.
 */
function referenceIsHostname(name: string): boolean {
  // Only letters, digits, hyphen and dot: this alone rules out escapes (\DDD, \.),
  // control bytes, CR/LF, NUL, spaces, non-ASCII and IPv6 literals (':').
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e;
    if (!ok) return false;
  }
  if (name.length === 0 || name.length > 253) return false;
  if (name[name.length - 1] === '.') return false;
  const labels = name.split('.');
  if (labels.length < 2) return false;
  for (const label of labels) {
    if (label.length < 1 || label.length > 63) return false;
    if (label[0] === '-' || label[label.length - 1] === '-') return false;
  }
  const tld = labels[labels.length - 1] ?? '';
  if ([...tld].every((c) => c >= '0' && c <= '9')) return false;
  if (labels.length === 4 && labels.every((l) => l.length > 0 && [...l].every((c) => c >= '0' && c <= '9') && Number(l) <= 255)) {
    return false; // dotted-quad IPv4 literal (already caught by the numeric TLD, kept explicit)
  }
  const lower = name.toLowerCase();
  if (lower === 'localhost') return false;
  if (lower.length > 10 && lower.slice(-10) === '.localhost') return false;
  return true;
}

const LOWER = [...'abcdefghijklmnopqrstuvwxyz'];
const UPPER = LOWER.map((c) => c.toUpperCase());
const DIGITS = [...'0123456789'];
const letter = fc.constantFrom(...LOWER, ...UPPER);
const alnum = fc.constantFrom(...LOWER, ...UPPER, ...DIGITS);
const ldh = fc.constantFrom(...LOWER, ...UPPER, ...DIGITS, '-');

// Characters that each break a hostname in a different way; 'K' (Kelvin) and 'İ'
// lower-case to ASCII-looking text, which a sloppy ASCII check might let through.
const HOSTILE_CHARS = [
  '\r', '\n', '\0', '\t', ' ', '\x7f', '\x1b', '\\', '_', '*', '@', ':', '/', '%', '"',
  'é', '\u212a', '\u0130', '\u2028', '\u202e', '\ufeff', '\ud800', '😀', '.', '-',
];

const labelArb = fc.oneof(
  alnum,
  fc.tuple(alnum, fc.string({ unit: ldh, maxLength: 61 }), alnum).map(([a, mid, b]) => a + mid + b),
);
const tldArb = fc.oneof(
  fc.tuple(letter, fc.string({ unit: alnum, maxLength: 6 })).map(([a, rest]) => a + rest),
  fc.constantFrom('com', 'TEST', 'xn--p1ai', 'a1', '1a', 'co-uk'),
);
const validNameArb = fc
  .tuple(fc.array(labelArb, { minLength: 1, maxLength: 4 }), tldArb)
  .map(([labels, tld]) => [...labels, tld].join('.'));

const mutatedNameArb = fc
  .tuple(validNameArb, fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.oneof(ldh, fc.constantFrom(...HOSTILE_CHARS)))
  .map(([name, at, op, ch]) => {
    const i = at % (name.length + 1);
    if (op === 'insert') return name.slice(0, i) + ch + name.slice(i);
    if (op === 'delete') return name.slice(0, i) + name.slice(i + 1);
    return name.slice(0, i) + ch + name.slice(i + 1);
  });

// Labels either side of 63, in first or last position.
const longLabelArb = fc
  .tuple(fc.integer({ min: 61, max: 65 }), letter, validNameArb, fc.boolean())
  .map(([n, c, rest, last]) => (last ? `${rest}.${c.repeat(n)}` : `${c.repeat(n)}.${rest}`));

/** Exactly `total` characters, with a dot after every `labelLength` characters. */
function shapedName(total: number, labelLength: number, fill: string): string {
  let out = '';
  for (let i = 0; out.length < total; i++) {
    out += (i + 1) % (labelLength + 1) === 0 ? '.' : fill[i % fill.length] ?? 'a';
  }
  // A letter at the end keeps the TLD from being all-numeric, so length decides.
  return out.slice(0, -1) + 'z';
}
const totalLengthArb = fc
  .tuple(fc.integer({ min: 250, max: 256 }), fc.integer({ min: 1, max: 64 }), fc.string({ unit: alnum, minLength: 16, maxLength: 16 }))
  .map(([total, labelLength, fill]) => shapedName(total, labelLength, fill));

const HOSTILE_NAMES = [
  '', '.', 'single', 'localhost', 'LocalHost', 'mail.localhost', 'mail.LOCALHOST', 'localhost.test', 'xlocalhost',
  'a.localhostx', 'a.test.', '.a.test', 'a..test', '-a.test', 'a-.test', 'a.-test', 'a.test-', 'a.123', 'a.1-2',
  '127.0.0.1', '1.2.3.4.example', '999.1.1.1', '0x7f.1', '::1', '2001:db8::1', '[127.0.0.1]', '::ffff:127.0.0.1',
  'mail.example.com\r\nRCPT TO:<x@y>', 'mail.example.com\n', 'mail\0.example.com', ' mail.example.com', 'mail .example.com',
  'a\\032b.test', 'x\\.y.test', 'a\\000.test', 'a\\127b.test', 'a\\013\\010.test', 'caf\\195\\169.test', 'a\\\\.test',
  'a\\\\032.test', 'a\\097.test', 'a\\-b.test', 'a\\', 'café.test', 'xn--caf-dma.test', 'ex\u0430mple.com', 'mail.\u212aelvin.test',
];
const escapeArb = fc
  .tuple(labelArb, fc.oneof(fc.integer({ min: 0, max: 999 }).map((n) => `\\${String(n).padStart(3, '0')}`), fc.constant('\\.')), validNameArb)
  .map(([a, esc, rest]) => `${a}${esc}.${rest}`);
const hostileArb = fc.oneof(
  fc.constantFrom(...HOSTILE_NAMES),
  fc.ipV4(),
  fc.ipV4Extended(),
  fc.ipV6(),
  escapeArb,
  fc.string({ unit: 'binary', maxLength: 24 }),
  fc.string({ unit: fc.oneof(ldh, fc.constantFrom(...HOSTILE_CHARS)), maxLength: 24 }),
);

const anyNameArb = fc.oneof(
  { arbitrary: validNameArb, weight: 4 },
  { arbitrary: mutatedNameArb, weight: 3 },
  { arbitrary: longLabelArb, weight: 1 },
  { arbitrary: totalLengthArb, weight: 1 },
  { arbitrary: hostileArb, weight: 3 },
);

describe('hostnameProblem against a reference model', () => {
  it('accepts exactly what the model accepts, and never throws', () => {
    fc.assert(
      fc.property(anyNameArb, (name) => {
        const problem = hostnameProblem(name);
        if (problem !== null) expect(problem.length).toBeGreaterThan(0);
        expect({ name, accepted: problem === null }).toEqual({ name, accepted: referenceIsHostname(name) });
      }),
      { numRuns: 3000 },
    );
  });

  it('the generators reach both verdicts and both length boundaries', () => {
    // Guards the property above against generators that drift into testing only rejects.
    expect(referenceIsHostname(shapedName(253, 63, 'abc'))).toBe(true);
    expect(referenceIsHostname(shapedName(254, 63, 'abc'))).toBe(false);
    expect(hostnameProblem(shapedName(253, 63, 'abc'))).toBeNull();
    expect(hostnameProblem(shapedName(254, 63, 'abc'))).not.toBeNull();
    const sample = fc.sample(anyNameArb, { numRuns: 2000, seed: 1 });
    const valid = sample.filter(referenceIsHostname).length;
    expect(valid).toBeGreaterThan(400);
    expect(sample.length - valid).toBeGreaterThan(400);
  });
});

// ---------------------------------------------------------------- 2. wire names

// Bytes that presentation form must escape or that sit next to escape syntax.
const TRICKY_BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x21, 0x22, 0x28, 0x2e, 0x30, 0x39, 0x3b, 0x40, 0x5c, 0x7e, 0x7f, 0x80, 0xc3, 0xff];
const labelBytesArb = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 63 }),
    fc.array(fc.oneof(fc.constantFrom(...TRICKY_BYTES), fc.integer({ min: 0x30, max: 0x39 })), { minLength: 1, maxLength: 63 }),
    fc.string({ unit: ldh, minLength: 1, maxLength: 63 }).map((s) => Buffer.from(s, 'latin1')),
  )
  .map((bytes) => Buffer.from(bytes));

/** Keeps leading labels while the wire form (length octets, labels, root octet) fits in 255. */
function fitWire(labels: Buffer[]): Buffer[] {
  const kept: Buffer[] = [];
  let wire = 1;
  for (const label of labels) {
    if (wire + label.length + 1 > 255) break;
    kept.push(label);
    wire += label.length + 1;
  }
  return kept;
}

const fullLabelsArb = fc
  .tuple(fc.uint8Array({ minLength: 63 * 3 + 61, maxLength: 63 * 3 + 61 }))
  .map(([bytes]) => [0, 63, 126, 189].map((start, i) => Buffer.from(bytes.subarray(start, start + (i === 3 ? 61 : 63)))));
const labelsArb = fc.oneof(
  { arbitrary: fc.array(labelBytesArb, { maxLength: 8 }).map(fitWire), weight: 5 },
  { arbitrary: fullLabelsArb, weight: 1 }, // exactly 255 octets on the wire
);

const ttlArb = fc.integer({ min: 0, max: 0x7fffffff });
const ptrMessageArb = fc
  .record({
    id: fc.integer({ min: 0, max: 0xffff }),
    response: fc.boolean(),
    opcode: fc.integer({ min: 0, max: 15 }),
    authoritative: fc.boolean(),
    truncated: fc.boolean(),
    recursionDesired: fc.boolean(),
    recursionAvailable: fc.boolean(),
    rcode: fc.integer({ min: 0, max: 15 }),
    owner: labelsArb,
    targets: fc.array(fc.tuple(labelsArb, ttlArb), { maxLength: 4 }),
  })
  .map(({ owner, targets, ...header }) => {
    const name = labelsToName(owner);
    const message: DnsMessage = {
      ...header,
      questions: [{ name, type: 12, class: 1 }],
      answers: targets.map(([labels, ttl]): ResourceRecord => ({ name, ttl, class: 1, type: 'PTR', target: labelsToName(labels) })),
      authorities: [],
      additionals: [],
    };
    return { message, targets: targets.map(([labels]) => labels) };
  });

describe('wire names', () => {
  it('labelsToName then nameToLabels gives back the same bytes', () => {
    fc.assert(
      fc.property(labelsArb, (labels) => {
        const name = labelsToName(labels);
        expect(nameToLabels(name)).toEqual(labels);
        // Printing is canonical: a second trip does not change the text either.
        expect(labelsToName(nameToLabels(name))).toBe(name);
      }),
      { numRuns: 2000 },
    );
  });

  it('names over 255 octets or with a label over 63 are refused, not truncated', () => {
    fc.assert(
      fc.property(fullLabelsArb, fc.integer({ min: 1, max: 3 }), (labels, extra) => {
        const last = labels[3] ?? Buffer.alloc(0);
        const longer = [...labels.slice(0, 3), Buffer.concat([last, Buffer.alloc(extra, 0x61)])];
        expect(() => nameToLabels(labelsToName(longer))).toThrow(WireFormatError);
        const wide = [Buffer.alloc(63 + extra, 0x61)];
        expect(() => nameToLabels(labelsToName(wide))).toThrow(WireFormatError);
      }),
      { numRuns: 50 },
    );
  });

  it('any text nameToLabels accepts prints back to text that parses to the same labels', () => {
    const textArb = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: fc.oneof(ldh, fc.constantFrom('.', '\\', '0', '1', '2', '5', ...HOSTILE_CHARS)), maxLength: 40 }),
    );
    fc.assert(
      fc.property(textArb, (text) => {
        let labels: Buffer[];
        try {
          labels = nameToLabels(text);
        } catch (err) {
          expect(err).toBeInstanceOf(WireFormatError);
          return;
        }
        expect(nameToLabels(labelsToName(labels))).toEqual(labels);
      }),
      { numRuns: 2000 },
    );
  });

  it('encodeMessage/decodeMessage round-trip PTR answers byte for byte', () => {
    fc.assert(
      fc.property(ptrMessageArb, ({ message, targets }) => {
        const wire = encodeMessage(message);
        const decoded = decodeMessage(wire);
        expect(decoded).toEqual(message);
        expect(decoded.answers.map((r) => (r.type === 'PTR' ? nameToLabels(r.target) : null))).toEqual(targets);
        expect(encodeMessage(decoded).equals(wire)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('a compressed PTR target decodes to the same labels as the uncompressed one, or is refused past 255 octets', () => {
    // Our writer never compresses, but real servers do: build the packet by hand.
    const wireName = (labels: readonly Buffer[]): Buffer =>
      Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
    fc.assert(
      fc.property(labelsArb, fc.array(labelBytesArb, { maxLength: 3 }).map(fitWire), (owner, prefix) => {
        const header = Buffer.from([0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        const question = Buffer.concat([wireName(owner), Buffer.from([0, 12, 0, 1])]);
        const pointer = Buffer.from([0xc0, 12]);
        const rdata = Buffer.concat([wireName(prefix).subarray(0, -1), pointer]);
        const fixed = Buffer.alloc(10);
        fixed.writeUInt16BE(12, 0);
        fixed.writeUInt16BE(1, 2);
        fixed.writeUInt32BE(60, 4);
        fixed.writeUInt16BE(rdata.length, 8);
        const packet = Buffer.concat([header, question, pointer, fixed, rdata]);
        const full = [...prefix, ...owner];
        const fits = full.reduce((n, l) => n + l.length + 1, 1) <= 255;
        if (!fits) {
          expect(() => decodeMessage(packet)).toThrow(WireFormatError);
          return;
        }
        const answer = decodeMessage(packet).answers[0];
        expect(answer?.name).toBe(labelsToName(owner));
        expect(answer?.type === 'PTR' ? nameToLabels(answer.target) : null).toEqual(full);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------- 3. FCrDNS against random zones

const EDGE = '127.0.0.2';
const OTHER = '127.0.0.3';
const ARPA = '2.0.0.127.in-addr.arpa';

// Zone owners, lower case. The invalid ones matter too: a valid PTR name may CNAME to them.
const OWNERS = ['a.test', 'b.test', 'c.test', 'bad\\032name.test', 'x\\.y.test', 'single', '127.0.0.3'] as const;
// What may appear as a PTR target or CNAME target: owners and case variants of them.
const POOL = [...OWNERS, 'A.test', 'B.TEST', 'C.Test', 'X\\.Y.test', 'Single'];

type OwnerData = { kind: 'a'; addresses: string[] } | { kind: 'cname'; target: string };
interface World {
  ptrs: string[];
  /** A non-PTR record at the reverse name turns "no PTR" from NXDOMAIN into NODATA. */
  reverseTxt: boolean;
  owners: Map<string, OwnerData>;
}

const VALID_POOL = POOL.filter(referenceIsHostname);
const INVALID_POOL = POOL.filter((n) => !referenceIsHostname(n));

// Weighted towards names that confirm: uniform choices leave the passing verdicts,
// PTR_MULTIPLE above all, to a handful of runs out of 150.
const ownerArb: fc.Arbitrary<OwnerData> = fc.oneof(
  {
    arbitrary: fc
      .constantFrom<string[]>([EDGE], [EDGE], [EDGE, OTHER], [OTHER, EDGE], [OTHER], [], [EDGE, EDGE])
      .map((addresses) => ({ kind: 'a' as const, addresses })),
    weight: 4,
  },
  { arbitrary: fc.constantFrom(...POOL).map((target) => ({ kind: 'cname' as const, target })), weight: 1 },
);
const ptrNameArb = fc.oneof(
  { arbitrary: fc.constantFrom(...VALID_POOL), weight: 3 },
  { arbitrary: fc.constantFrom(...INVALID_POOL), weight: 1 },
);
const worldArb: fc.Arbitrary<World> = fc
  .record({
    ptrs: fc.oneof(
      { arbitrary: fc.constant<string[]>([]), weight: 1 },
      { arbitrary: fc.array(ptrNameArb, { minLength: 1, maxLength: 3 }), weight: 7 },
    ),
    reverseTxt: fc.boolean(),
    data: fc.array(ownerArb, { minLength: OWNERS.length, maxLength: OWNERS.length }),
  })
  .map(({ ptrs, reverseTxt, data }) => ({
    ptrs,
    reverseTxt,
    owners: new Map(OWNERS.map((owner, i): [string, OwnerData] => [owner, data[i] ?? { kind: 'a', addresses: [] }])),
  }));

function soa(zone: string): ResourceRecord {
  return {
    name: zone, ttl: 60, class: 1, type: 'SOA',
    mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 60,
  };
}

function zoneOf(world: World): ResourceRecord[] {
  const records: ResourceRecord[] = [soa('test'), soa('127.in-addr.arpa')];
  // Insertion order is answer order, which decides which confirming name comes first.
  for (const target of world.ptrs) records.push({ name: ARPA, ttl: 60, class: 1, type: 'PTR', target });
  if (world.reverseTxt) records.push({ name: ARPA, ttl: 60, class: 1, type: 'TXT', strings: ['not a ptr'] });
  for (const [name, data] of world.owners) {
    if (data.kind === 'cname') records.push({ name, ttl: 60, class: 1, type: 'CNAME', target: data.target });
    else for (const address of data.addresses) records.push({ name, ttl: 60, class: 1, type: 'A', address });
  }
  return records;
}

function modelConfirms(world: World, name: string): boolean {
  const seen = new Set<string>();
  for (let key = name.toLowerCase(); ; ) {
    if (seen.has(key)) return false; // CNAME loop
    seen.add(key);
    const data = world.owners.get(key);
    if (!data) return false;
    if (data.kind === 'a') return data.addresses.includes(EDGE);
    key = data.target.toLowerCase();
  }
}

interface Outcome {
  ptr: [string, string | null];
  fcrdns: [string, string | null];
  name: string | null;
  names: Array<[string, boolean]>;
}

function modelOutcome(world: World): Outcome {
  const unique: string[] = [];
  for (const name of world.ptrs) if (!unique.some((u) => u.toLowerCase() === name.toLowerCase())) unique.push(name);
  if (unique.length === 0) return { ptr: ['fail', 'PTR_MISSING'], fcrdns: ['skip', null], name: null, names: [] };
  const names = unique.map((n): [string, boolean] => [n, referenceIsHostname(n) && modelConfirms(world, n)]);
  if (!unique.some(referenceIsHostname)) return { ptr: ['fail', 'PTR_INVALID'], fcrdns: ['skip', null], name: null, names };
  const confirming = names.filter(([, ok]) => ok).map(([n]) => n);
  const first = confirming[0];
  if (first !== undefined && confirming.length === names.length) {
    const multiple = confirming.length > 1;
    return { ptr: ['pass', null], fcrdns: multiple ? ['warn', 'PTR_MULTIPLE'] : ['pass', null], name: first.toLowerCase(), names };
  }
  if (first !== undefined) return { ptr: ['pass', null], fcrdns: ['fail', 'PTR_AMBIGUOUS'], name: null, names };
  return { ptr: ['pass', null], fcrdns: ['fail', 'FCRDNS_MISMATCH'], name: null, names };
}

describe('checkFcrdns against random zone data', () => {
  it('the world generator reaches every verdict often enough to matter', () => {
    const tally = new Map<string, number>();
    for (const world of fc.sample(worldArb, { numRuns: 1000, seed: 1 })) {
      const { ptr, fcrdns } = modelOutcome(world);
      const key = ptr[1] ?? fcrdns[1] ?? fcrdns[0];
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    for (const key of ['PTR_MISSING', 'PTR_INVALID', 'pass', 'PTR_MULTIPLE', 'PTR_AMBIGUOUS', 'FCRDNS_MISMATCH']) {
      expect({ key, share: (tally.get(key) ?? 0) >= 50 }).toEqual({ key, share: true });
    }
  });

  let dns: FixtureDnsServer;
  let resolver: Resolver;

  beforeAll(async () => {
    dns = await startDnsServer({ records: [] });
    const server = parseServer(dns.server);
    if (!server) throw new Error(`fixture server address ${dns.server} does not parse`);
    resolver = new Resolver({ servers: [server], attemptTimeout: 500, clock: systemClock, minTtl: 1, maxTtl: 1, maxNegativeTtl: 1 });
  });
  afterAll(async () => {
    await dns?.close();
  });

  it('gives the verdict the model gives, and never throws', async () => {
    await fc.assert(
      fc.asyncProperty(worldArb, async (world) => {
        dns.setRecords(zoneOf(world));
        resolver.clear();
        const verdict = await checkFcrdns(EDGE, resolver, AbortSignal.timeout(3000), { maxPtrNames: 10 });
        const [ptr, fcrdns] = verdict.checks;
        const actual: Outcome = {
          ptr: [ptr.status, ptr.code],
          fcrdns: [fcrdns.status, fcrdns.code],
          name: verdict.name,
          names: verdict.ptrNames.map((p): [string, boolean] => [p.name, p.confirms]),
        };
        expect(actual).toEqual(modelOutcome(world));
      }),
      { numRuns: 150 },
    );
  });
});
