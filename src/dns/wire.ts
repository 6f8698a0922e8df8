/**
 * DNS wire format (RFC 1035 section 4), written here rather than taken from a
 * library on purpose: the general-purpose codecs join labels with '.', so a PTR
 * label that itself contains a dot ("evil\.example.com") decodes to a different,
 * valid-looking name. The edge check must judge the exact labels a receiver's
 * resolver sees, so names are decoded byte for byte into RFC 1035 presentation
 * form, where every byte outside letters, digits and hyphens stays visible as an
 * escape (\. \\ \DDD) instead of disappearing.
 */
import { isIPv4, isIPv6, SocketAddress } from 'node:net';
import ipaddr from 'ipaddr.js';

export const RecordType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  OPT: 41,
  ANY: 255,
} as const;
export type RecordTypeName = Exclude<keyof typeof RecordType, 'OPT' | 'ANY'>;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

export function rcodeName(rcode: number): string {
  for (const [name, value] of Object.entries(Rcode)) if (value === rcode) return name;
  return `RCODE${rcode}`;
}

export function typeName(code: number): string {
  for (const [name, value] of Object.entries(RecordType)) if (value === code) return name;
  return `TYPE${code}`;
}

export type RecordData =
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'PTR' | 'CNAME' | 'NS'; target: string }
  | { type: 'MX'; preference: number; exchange: string }
  | { type: 'TXT'; strings: string[] }
  | {
      type: 'SOA';
      mname: string;
      rname: string;
      serial: number;
      refresh: number;
      retry: number;
      expire: number;
      minimum: number;
    }
  | { type: 'OTHER'; typeCode: number; raw: Buffer };

export type ResourceRecord = RecordData & { name: string; ttl: number; class: number };

export interface Question {
  name: string;
  type: number;
  class: number;
}

export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  authoritative: boolean;
  truncated: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  /** AD: the answer was DNSSEC-validated by the server (RFC 4035 section 3.2.3); in a query, a request for that bit (RFC 6840 section 5.7). */
  authenticData?: boolean;
  rcode: number;
  questions: Question[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

export class WireFormatError extends Error {
  override name = 'WireFormatError';
}

const CLASS_IN = 1;
const MAX_NAME_WIRE_OCTETS = 255;
const MAX_POINTER_JUMPS = 64;

// ---------------------------------------------------------------- names

/** Presentation form of one raw label: LDH bytes as is, everything else escaped. */
function escapeLabel(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) {
    if (byte === 0x2e) out += '\\.';
    else if (byte === 0x5c) out += '\\\\';
    else if (byte > 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += '\\' + byte.toString().padStart(3, '0');
  }
  return out;
}

/** Splits a presentation-form name into raw labels, honouring \. \\ and \DDD escapes. */
export function nameToLabels(name: string): Buffer[] {
  if (name === '.' || name === '') return [];
  const labels: Buffer[] = [];
  let current: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name.charCodeAt(i);
    if (ch === 0x5c) {
      const digits = name.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(digits)) {
        const value = Number(digits);
        if (value > 255) throw new WireFormatError(`bad escape \\${digits} in ${JSON.stringify(name)}`);
        current.push(value);
        i += 3;
      } else if (i + 1 < name.length) {
        i += pushChar(current, name, i + 1);
      } else {
        throw new WireFormatError(`dangling backslash in ${JSON.stringify(name)}`);
      }
    } else if (ch === 0x2e) {
      if (current.length === 0) throw new WireFormatError(`empty label in ${JSON.stringify(name)}`);
      labels.push(Buffer.from(current));
      current = [];
    } else {
      i += pushChar(current, name, i) - 1;
    }
  }
  if (current.length > 0) labels.push(Buffer.from(current));
  let wireLength = 1;
  for (const label of labels) {
    if (label.length > 63) throw new WireFormatError(`label longer than 63 octets in ${JSON.stringify(name)}`);
    wireLength += label.length + 1;
  }
  if (wireLength > MAX_NAME_WIRE_OCTETS) throw new WireFormatError(`name longer than 255 octets: ${JSON.stringify(name)}`);
  return labels;
}

/**
 * Appends the bytes of the character at `index` and returns how many UTF-16 units it used.
 * Raw non-ASCII (from a zone file, say) is kept as its UTF-8 bytes, as a real server would
 * serve it; taking the low byte of the code unit would silently turn it into another name.
 */
function pushChar(out: number[], text: string, index: number): number {
  const code = text.codePointAt(index) ?? 0;
  if (code < 0x80) {
    out.push(code);
    return 1;
  }
  const char = String.fromCodePoint(code);
  for (const byte of Buffer.from(char, 'utf8')) out.push(byte);
  return char.length;
}

export function labelsToName(labels: readonly Buffer[]): string {
  return labels.length === 0 ? '.' : labels.map(escapeLabel).join('.');
}

/** Canonical key for comparing names: case-insensitive for ASCII, exact otherwise. */
export function nameKey(name: string): string {
  const trimmed = name !== '.' && endsWithRootDot(name) ? name.slice(0, -1) : name;
  return trimmed.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * True when the name ends in an unescaped (root) dot. Looking only at the last two
 * characters is not enough: in `a\\.` the dot is the root, in `a\.` it is label data.
 */
export function endsWithRootDot(name: string): boolean {
  if (!name.endsWith('.')) return false;
  let backslashes = 0;
  for (let i = name.length - 2; i >= 0 && name[i] === '\\'; i--) backslashes++;
  return backslashes % 2 === 0;
}

// ---------------------------------------------------------------- reader

class Reader {
  constructor(
    readonly buf: Buffer,
    public offset = 0,
  ) {}

  need(n: number): void {
    if (this.offset + n > this.buf.length) throw new WireFormatError('message truncated mid-field');
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.offset++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  name(): string {
    const labels: Buffer[] = [];
    let offset = this.offset;
    let jumps = 0;
    let wireLength = 1;
    let resumeAt = -1;
    for (;;) {
      if (offset >= this.buf.length) throw new WireFormatError('name runs past the message');
      const len = this.buf.readUInt8(offset);
      if (len === 0) {
        offset += 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        if (offset + 1 >= this.buf.length) throw new WireFormatError('compression pointer runs past the message');
        const target = this.buf.readUInt16BE(offset) & 0x3fff;
        if (resumeAt < 0) resumeAt = offset + 2;
        // Pointers may only go backwards; together with the jump cap this rules out loops.
        if (target >= offset || ++jumps > MAX_POINTER_JUMPS) throw new WireFormatError('compression pointer loop');
        offset = target;
        continue;
      }
      if ((len & 0xc0) !== 0) throw new WireFormatError('unsupported label type');
      wireLength += len + 1;
      if (wireLength > MAX_NAME_WIRE_OCTETS) throw new WireFormatError('name longer than 255 octets');
      if (offset + 1 + len > this.buf.length) throw new WireFormatError('label runs past the message');
      labels.push(this.buf.subarray(offset + 1, offset + 1 + len));
      offset += 1 + len;
    }
    this.offset = resumeAt >= 0 ? resumeAt : offset;
    return labelsToName(labels);
  }
}

function ipv6FromBytes(bytes: Buffer): string {
  return ipv6Text(ipaddr.fromByteArray([...bytes]).toNormalizedString());
}

/**
 * The RFC 5952 text of a valid IPv6 address (lower case, the first longest zero
 * run compressed), exactly as Node prints socket addresses: parsed by ipaddr.js,
 * printed by Node's inet_ntop. ipaddr.js's own toString() compresses a later
 * run when a leading one is as long (0:0:1:0:0:1:2:3 becomes 0:0:1::1:2:3).
 */
export function ipv6Text(address: string): string {
  return new SocketAddress({ address: ipaddr.IPv6.parse(address).toNormalizedString(), family: 'ipv6' }).address;
}

function readRecord(reader: Reader): ResourceRecord {
  const name = reader.name();
  const type = reader.u16();
  const klass = reader.u16();
  const ttl = reader.u32();
  const length = reader.u16();
  const end = reader.offset + length;
  reader.need(length);
  const base = { name, ttl: ttl > 0x7fffffff ? 0 : ttl, class: klass };
  let data: RecordData;
  switch (type) {
    case RecordType.A:
      if (length !== 4) throw new WireFormatError(`A record with ${length} octets`);
      data = { type: 'A', address: Array.from(reader.bytes(4)).join('.') };
      break;
    case RecordType.AAAA:
      if (length !== 16) throw new WireFormatError(`AAAA record with ${length} octets`);
      data = { type: 'AAAA', address: ipv6FromBytes(reader.bytes(16)) };
      break;
    case RecordType.PTR:
    case RecordType.CNAME:
    case RecordType.NS:
      data = { type: typeName(type) as 'PTR' | 'CNAME' | 'NS', target: reader.name() };
      break;
    case RecordType.MX:
      data = { type: 'MX', preference: reader.u16(), exchange: reader.name() };
      break;
    case RecordType.TXT: {
      const strings: string[] = [];
      while (reader.offset < end) strings.push(reader.bytes(reader.u8()).toString('latin1'));
      data = { type: 'TXT', strings };
      break;
    }
    case RecordType.SOA:
      data = {
        type: 'SOA',
        mname: reader.name(),
        rname: reader.name(),
        serial: reader.u32(),
        refresh: reader.u32(),
        retry: reader.u32(),
        expire: reader.u32(),
        minimum: reader.u32(),
      };
      break;
    default:
      data = { type: 'OTHER', typeCode: type, raw: Buffer.from(reader.bytes(length)) };
  }
  if (reader.offset !== end) throw new WireFormatError(`${typeName(type)} record data length mismatch`);
  return { ...base, ...data };
}

export function decodeMessage(buf: Buffer): DnsMessage {
  const reader = new Reader(buf);
  const id = reader.u16();
  const flags = reader.u16();
  const counts = [reader.u16(), reader.u16(), reader.u16(), reader.u16()] as const;
  const questions: Question[] = [];
  for (let i = 0; i < counts[0]; i++) {
    questions.push({ name: reader.name(), type: reader.u16(), class: reader.u16() });
  }
  const section = (count: number): ResourceRecord[] => {
    const records: ResourceRecord[] = [];
    for (let i = 0; i < count; i++) records.push(readRecord(reader));
    return records;
  };
  const truncated = (flags & 0x0200) !== 0;
  const message: DnsMessage = {
    id,
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    // Present only when set, so that a message without it round-trips unchanged.
    ...((flags & 0x0020) !== 0 ? { authenticData: true } : {}),
    rcode: flags & 0xf,
    questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
  try {
    message.answers = section(counts[1]);
    message.authorities = section(counts[2]);
    message.additionals = section(counts[3]);
  } catch (err) {
    // A truncated UDP answer may be cut mid-record; the caller retries over TCP anyway.
    if (!truncated) throw err;
  }
  return message;
}

// ---------------------------------------------------------------- writer

class Writer {
  private chunks: Buffer[] = [];
  length = 0;
  push(buf: Buffer): void {
    this.chunks.push(buf);
    this.length += buf.length;
  }
  u8(v: number): void {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.push(b);
  }
  u16(v: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.push(b);
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.push(b);
  }
  name(name: string): void {
    for (const label of nameToLabels(name)) {
      this.u8(label.length);
      this.push(label);
    }
    this.u8(0);
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function ipv6ToBytes(address: string): Buffer {
  return Buffer.from(ipaddr.IPv6.parse(address).toByteArray());
}

function writeRdata(writer: Writer, record: RecordData): void {
  const body = new Writer();
  switch (record.type) {
    case 'A':
      if (!isIPv4(record.address)) throw new WireFormatError(`not an IPv4 address: ${record.address}`);
      body.push(Buffer.from(record.address.split('.').map(Number)));
      break;
    case 'AAAA':
      if (!isIPv6(record.address)) throw new WireFormatError(`not an IPv6 address: ${record.address}`);
      body.push(ipv6ToBytes(record.address));
      break;
    case 'PTR':
    case 'CNAME':
    case 'NS':
      body.name(record.target);
      break;
    case 'MX':
      body.u16(record.preference);
      body.name(record.exchange);
      break;
    case 'TXT':
      for (const text of record.strings) {
        const bytes = Buffer.from(text, 'latin1');
        if (bytes.length > 255) throw new WireFormatError('TXT string longer than 255 octets');
        body.u8(bytes.length);
        body.push(bytes);
      }
      break;
    case 'SOA':
      body.name(record.mname);
      body.name(record.rname);
      for (const v of [record.serial, record.refresh, record.retry, record.expire, record.minimum]) body.u32(v);
      break;
    case 'OTHER':
      body.push(record.raw);
      break;
  }
  const rdata = body.toBuffer();
  writer.u16(rdata.length);
  writer.push(rdata);
}

function typeCodeOf(record: RecordData): number {
  return record.type === 'OTHER' ? record.typeCode : RecordType[record.type];
}

export function encodeRecord(record: ResourceRecord): Buffer {
  const writer = new Writer();
  writer.name(record.name);
  writer.u16(typeCodeOf(record));
  writer.u16(record.class);
  writer.u32(record.ttl);
  writeRdata(writer, record);
  return writer.toBuffer();
}

export interface EncodeOptions {
  /** Drop whole records from the end and set TC when the message exceeds this many octets. */
  maxSize?: number;
}

export function encodeMessage(message: DnsMessage, options: EncodeOptions = {}): Buffer {
  const header = (truncated: boolean, counts: readonly number[]): Buffer => {
    const writer = new Writer();
    writer.u16(message.id);
    let flags = (message.opcode & 0xf) << 11;
    if (message.response) flags |= 0x8000;
    if (message.authoritative) flags |= 0x0400;
    if (truncated) flags |= 0x0200;
    if (message.recursionDesired) flags |= 0x0100;
    if (message.recursionAvailable) flags |= 0x0080;
    if (message.authenticData) flags |= 0x0020;
    flags |= message.rcode & 0xf;
    writer.u16(flags);
    for (const count of counts) writer.u16(count);
    return writer.toBuffer();
  };
  const questions = message.questions.map((q) => {
    const writer = new Writer();
    writer.name(q.name);
    writer.u16(q.type);
    writer.u16(q.class);
    return writer.toBuffer();
  });
  const sections = [message.answers, message.authorities, message.additionals].map((records) =>
    records.map(encodeRecord),
  );
  const maxSize = options.maxSize ?? Infinity;
  let size = 12 + questions.reduce((n, q) => n + q.length, 0);
  const kept: Buffer[][] = [[], [], []];
  let truncated = message.truncated;
  outer: for (const [index, records] of sections.entries()) {
    for (const record of records) {
      if (size + record.length > maxSize) {
        truncated = true;
        break outer;
      }
      size += record.length;
      kept[index]?.push(record);
    }
  }
  return Buffer.concat([
    header(truncated, [questions.length, ...kept.map((k) => k.length)]),
    ...questions,
    ...kept.flat(),
  ]);
}

export function buildQuery(id: number, name: string, type: number): Buffer {
  return encodeMessage({
    id,
    response: false,
    opcode: 0,
    authoritative: false,
    truncated: false,
    recursionDesired: true,
    recursionAvailable: false,
    // RFC 6840 section 5.7: a validating resolver reports AD only to a query that sets it (DANE reads it).
    authenticData: true,
    rcode: 0,
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}

// ---------------------------------------------------------------- reverse names

/** The in-addr.arpa / ip6.arpa name whose PTR records name this address. */
export function reverseName(address: string): string {
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  if (isIPv6(address)) {
    const nibbles = ipv6ToBytes(address.split('%')[0] ?? address).toString('hex').split('');
    return `${nibbles.reverse().join('.')}.ip6.arpa`;
  }
  throw new WireFormatError(`not an IP address: ${address}`);
}

/** Canonical text form of an address, with IPv4-mapped IPv6 reduced to IPv4. */
export function canonicalAddress(address: string): string {
  const bare = address.split('%')[0] ?? address;
  // node:net decides what is an address: ipaddr.js also takes IPv4 shorthands such as 127.1.
  if (!isIPv6(bare) || !ipaddr.IPv6.isValid(bare)) return bare;
  const ip = ipaddr.IPv6.parse(bare);
  return ip.isIPv4MappedAddress() ? ip.toIPv4Address().toString() : ipv6Text(bare);
}
