/**
 * A real authoritative DNS server on loopback, for tests and the demo. It speaks
 * the wire protocol over UDP and TCP on one port, so whatever resolver is under
 * test (ours, or Node's c-ares) goes through its real code paths: TC=1 and the
 * TCP retry, timeouts, SERVFAIL, NXDOMAIN versus NODATA. Wildcard owners
 * (`*.bulk.test. MX 10 mx.bulk.test.`) answer for names that do not exist, as
 * RFC 4592 says, so a test can reach thousands of domains with one record.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv4, isIPv6, type Server as TcpServer, type Socket as TcpSocket } from 'node:net';
import {
  Rcode,
  RecordType,
  decodeMessage,
  encodeMessage,
  encodeRecord,
  ipv6Text,
  labelsToName,
  nameKey,
  nameToLabels,
  typeName,
  type DnsMessage,
  type ResourceRecord,
} from '../dns/wire.js';
import { loadZoneFiles, parseZone } from './zone.js';

export type DnsFaultType = 'A' | 'AAAA' | 'PTR' | 'CNAME' | 'MX' | 'TXT' | 'NS' | 'SOA';

export interface DnsFault {
  /** Answer after this delay. */
  delayMs?: number;
  /** Never answer. */
  drop?: boolean;
  /** Answer with this rcode and no records. */
  rcode?: 'SERVFAIL' | 'REFUSED' | 'NXDOMAIN';
  /** Over UDP always answer with TC=1 and no records (forces TCP); TCP is served normally. */
  truncate?: boolean;
  /** Serve exactly these records as the answer (NOERROR), whatever the zone says: hostile or broken servers. */
  answers?: ResourceRecord[];
  /**
   * Before the real reply, send a forged one (wrong query id, answer pointing at
   * 127.0.0.66), as an off-path spoofer racing the server would.
   */
  spoofFirst?: boolean;
  /** Only for these query types; absent = all. */
  types?: DnsFaultType[];
}

export interface DnsServerOptions {
  /** Zone-file text(s). */
  zone?: string | string[];
  /** Zone-file paths. */
  zoneFiles?: string[];
  /** Already-parsed records, added after the zone texts and files. */
  records?: ResourceRecord[];
  /** Loopback address to bind: 127.0.0.0/8 or ::1. Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (ephemeral); UDP and TCP are bound on the same port. */
  port?: number;
  /** Faults by owner name of the question (case-insensitive). */
  faults?: Record<string, DnsFault>;
  /** Applies to every query without a matching per-name fault. */
  defaultFault?: DnsFault;
  /**
   * Names whose zones count as DNSSEC-signed and validated: an answer about
   * one of them or a name below it carries the AD bit, but only when the query
   * asked for it (AD set, RFC 6840 section 5.7), as a validating resolver does.
   */
  signed?: string[];
}

export interface QueryLogEntry {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
  at: number;
}

export interface FixtureDnsServer {
  readonly host: string;
  readonly port: number;
  /** '127.0.0.1:PORT' or '[::1]:PORT', the form a resolver's `servers` option takes. */
  readonly server: string;
  /** Total queries received, including faulted and dropped ones. */
  readonly queries: number;
  readonly log: readonly QueryLogEntry[];
  resetStats(): void;
  setFault(name: string, fault: DnsFault | undefined): void;
  setDefaultFault(fault: DnsFault | undefined): void;
  /** Removes every per-name fault and the default fault. */
  clearFaults(): void;
  /** Replaces the zone data; queries already being answered keep the old data. */
  setRecords(records: ResourceRecord[]): void;
  /** Closes UDP and TCP and drops open connections and pending delayed replies. Idempotent. */
  close(): Promise<void>;
}

const UDP_MAX = 512;
const TCP_MAX = 0xffff;
const MAX_CNAME_STEPS = 16;
const BIND_ATTEMPTS = 8;
const TCP_IDLE_MS = 30_000;
const HEADER_OCTETS = 12;
const CLASS_IN = 1;
const CLASS_ANY = 255;
const WILDCARD_LABEL = Buffer.from('*');

type Transport = 'udp' | 'tcp';

/** Comparison key for any name form a caller may hand us (trailing dot, raw UTF-8, odd escapes). */
function keyOf(name: string): string {
  return nameKey(labelsToName(nameToLabels(name)));
}

/** Keys of the strict ancestors of a name, nearest first, down to the root. */
function ancestorKeys(name: string): string[] {
  const labels = nameToLabels(name);
  const keys: string[] = [];
  for (let i = 1; i <= labels.length; i++) keys.push(nameKey(labelsToName(labels.slice(i))));
  return keys;
}

class ZoneData {
  private readonly byName = new Map<string, ResourceRecord[]>();
  /** Owners plus every ancestor of an owner: names that exist, if only as empty non-terminals. */
  private readonly existing = new Set<string>();

  constructor(records: readonly ResourceRecord[]) {
    for (const record of records) {
      // Fail at setup, naming the record, rather than with SERVFAIL mid-test.
      try {
        encodeRecord(record);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        throw new Error(`cannot serve ${record.type} record for ${JSON.stringify(record.name)}: ${reason}`);
      }
      const key = keyOf(record.name);
      const list = this.byName.get(key);
      if (list) list.push(record);
      else this.byName.set(key, [record]);
      this.existing.add(key);
      for (const ancestor of ancestorKeys(record.name)) this.existing.add(ancestor);
    }
  }

  at(key: string): readonly ResourceRecord[] {
    return this.byName.get(key) ?? [];
  }

  exists(key: string): boolean {
    return this.existing.has(key);
  }

  /**
   * RFC 4592 section 3.3.1: for a name that does not exist, the records of
   * the wildcard `*` directly under its closest encloser (the nearest existing
   * ancestor). A nearer existing name, even an empty non-terminal, blocks
   * wildcards further up. An empty list when the wildcard exists with no
   * records of its own; undefined when none covers the name.
   */
  wildcardFor(name: string): readonly ResourceRecord[] | undefined {
    const labels = nameToLabels(name);
    for (let i = 1; i <= labels.length; i++) {
      const encloser = labels.slice(i);
      if (!this.existing.has(nameKey(labelsToName(encloser)))) continue;
      const source = nameKey(labelsToName([WILDCARD_LABEL, ...encloser]));
      return this.existing.has(source) ? this.at(source) : undefined;
    }
    return undefined;
  }

  /** SOA of the closest enclosing zone, with the negative-caching TTL of RFC 2308 section 3. */
  soaFor(name: string): ResourceRecord | undefined {
    for (const key of [keyOf(name), ...ancestorKeys(name)]) {
      const soa = this.at(key).find((r) => r.type === 'SOA');
      if (soa && soa.type === 'SOA') return { ...soa, ttl: Math.min(soa.ttl, soa.minimum) };
    }
    return undefined;
  }
}

interface Answer {
  rcode: number;
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
}

function matches(record: ResourceRecord, qtype: number): boolean {
  if (qtype === RecordType.ANY) return true;
  // Types the wire module does not decode (TLSA) are served by their type code.
  if (record.type === 'OTHER') return record.typeCode === qtype;
  return RecordType[record.type] === qtype;
}

/** What an authoritative server for these zones would say, following CNAMEs inside the data. */
function resolve(zone: ZoneData, qname: string, qtype: number): Answer {
  const answers: ResourceRecord[] = [];
  const seen = new Set<string>();
  let name = qname;
  for (let step = 0; ; step++) {
    const key = keyOf(name);
    seen.add(key);
    // Synthesised records carry the name asked for as their owner (RFC 4592 section 3.3.1).
    const wildcard = zone.exists(key) ? undefined : zone.wildcardFor(name);
    const records = wildcard ? wildcard.map((r) => ({ ...r, name })) : zone.at(key);
    const direct = records.filter((r) => matches(r, qtype));
    if (direct.length > 0) return { rcode: Rcode.NOERROR, answers: [...answers, ...direct], authorities: [] };
    const cname = qtype === RecordType.CNAME ? undefined : records.find((r) => r.type === 'CNAME');
    if (cname && cname.type === 'CNAME') {
      answers.push(cname);
      const next = keyOf(cname.target);
      // A loop or an over-long chain ends the answer with what was collected (NOERROR).
      if (seen.has(next) || step + 1 >= MAX_CNAME_STEPS) {
        return { rcode: Rcode.NOERROR, answers, authorities: [] };
      }
      name = cname.target;
      continue;
    }
    const soa = zone.soaFor(name);
    // A chain leaving our zones ends here, as at a real authoritative server; the
    // resolver would chase the target elsewhere.
    if (answers.length > 0 && !soa) return { rcode: Rcode.NOERROR, answers, authorities: [] };
    const rcode = zone.exists(key) || wildcard ? Rcode.NOERROR : Rcode.NXDOMAIN;
    return { rcode, answers, authorities: soa ? [soa] : [] };
  }
}

function faultApplies(fault: DnsFault | undefined, qtype: number): fault is DnsFault {
  if (!fault) return false;
  return !fault.types || (fault.types as readonly string[]).includes(typeName(qtype));
}

function isLoopback(host: string): boolean {
  if (isIPv4(host)) return host.startsWith('127.');
  return isIPv6(host) && ipv6Text(host) === '::1';
}

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

function bindUdp(socket: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    socket.once('error', onError);
    socket.bind(port, host, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function listenTcp(server: TcpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ port, host }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // never bound, or already closed
    }
  });
}

function closeTcp(server: TcpServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/** UDP and TCP both bound to one port: the ephemeral UDP port may be taken for TCP, so retry. */
async function bindBoth(host: string, port: number): Promise<{ udp: UdpSocket; tcp: TcpServer; port: number }> {
  const family = isIPv6(host) ? 'udp6' : 'udp4';
  for (let attempt = 1; ; attempt++) {
    const udp = createSocket({ type: family });
    const tcp = createServer();
    try {
      await bindUdp(udp, port, host);
    } catch (err) {
      await closeUdp(udp);
      throw err;
    }
    const bound = udp.address().port;
    try {
      await listenTcp(tcp, bound, host);
      return { udp, tcp, port: bound };
    } catch (err) {
      await closeUdp(udp);
      await closeTcp(tcp);
      if (errorCode(err) !== 'EADDRINUSE' || port !== 0 || attempt >= BIND_ATTEMPTS) throw err;
    }
  }
}

function responseTo(query: DnsMessage, answer: Answer, extra: { truncated?: boolean } = {}): DnsMessage {
  const authoritative = answer.rcode === Rcode.NOERROR || answer.rcode === Rcode.NXDOMAIN;
  return {
    id: query.id,
    response: true,
    opcode: query.opcode,
    authoritative,
    truncated: extra.truncated ?? false,
    recursionDesired: query.recursionDesired,
    recursionAvailable: true,
    rcode: answer.rcode,
    questions: query.questions,
    answers: answer.answers,
    authorities: answer.authorities,
    // No EDNS: an OPT in the query is ignored, and so UDP answers stay within 512 octets.
    additionals: [],
  };
}

/** A reply built from the header alone, for queries whose body cannot be parsed. */
function headerOnlyReply(query: Buffer, rcode: number): Buffer {
  const reply = Buffer.alloc(HEADER_OCTETS);
  query.copy(reply, 0, 0, 2);
  const flags = query.readUInt16BE(2);
  // QR=1, opcode and RD copied, RA=1.
  reply.writeUInt16BE(0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | rcode, 2);
  return reply;
}

export async function startDnsServer(options: DnsServerOptions): Promise<FixtureDnsServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    throw new Error(`startDnsServer binds loopback only (127.0.0.0/8 or ::1), not ${JSON.stringify(host)}`);
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`bad port ${port}`);

  const texts = options.zone === undefined ? [] : Array.isArray(options.zone) ? options.zone : [options.zone];
  const records: ResourceRecord[] = [];
  for (const text of texts) records.push(...parseZone(text));
  if (options.zoneFiles) records.push(...(await loadZoneFiles(options.zoneFiles)));
  if (options.records) records.push(...options.records);
  let zone = new ZoneData(records);

  const faults = new Map<string, DnsFault>();
  for (const [name, fault] of Object.entries(options.faults ?? {})) faults.set(keyOf(name), fault);
  let defaultFault = options.defaultFault;
  const signed = new Set((options.signed ?? []).map(keyOf));
  const isSigned = (name: string): boolean => [keyOf(name), ...ancestorKeys(name)].some((key) => signed.has(key));

  let queries = 0;
  let log: QueryLogEntry[] = [];
  let closed = false;
  let closing: Promise<void> | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const connections = new Set<TcpSocket>();

  const bound = await bindBoth(host, port);
  const { udp, tcp } = bound;

  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!closed) fn();
    }, ms);
    timers.add(timer);
  };

  /** Works out the reply to one query; `send` is called at most once, maybe later. */
  const handle = (packet: Buffer, transport: Transport, send: (reply: Buffer) => void): void => {
    if (packet.length < HEADER_OCTETS) return; // not even a header: nothing to answer to
    if ((packet.readUInt16BE(2) & 0x8000) !== 0) return; // a response; answering could start a loop
    queries++;

    let query: DnsMessage;
    try {
      query = decodeMessage(packet);
    } catch {
      log.push({ name: '', type: 'MALFORMED', transport, at: Date.now() });
      send(headerOnlyReply(packet, Rcode.FORMERR));
      return;
    }
    const question = query.questions[0];
    log.push({
      name: question?.name ?? '',
      type: question ? typeName(question.type) : 'MALFORMED',
      transport,
      at: Date.now(),
    });
    if (query.opcode !== 0) {
      send(encodeMessage(responseTo(query, { rcode: Rcode.NOTIMP, answers: [], authorities: [] })));
      return;
    }
    if (!question || query.questions.length !== 1) {
      send(headerOnlyReply(packet, Rcode.FORMERR));
      return;
    }

    const named = faults.get(keyOf(question.name));
    const fault = faultApplies(named, question.type)
      ? named
      : faultApplies(defaultFault, question.type)
        ? defaultFault
        : undefined;
    if (fault?.drop) return;

    const maxSize = transport === 'udp' ? UDP_MAX : TCP_MAX;
    const snapshot = zone;
    const reply = (): void => {
      let message: DnsMessage;
      if (fault?.truncate && transport === 'udp') {
        message = responseTo(query, { rcode: Rcode.NOERROR, answers: [], authorities: [] }, { truncated: true });
      } else if (fault?.rcode) {
        message = responseTo(query, { rcode: Rcode[fault.rcode], answers: [], authorities: [] });
      } else if (fault?.answers) {
        message = responseTo(query, { rcode: Rcode.NOERROR, answers: fault.answers, authorities: [] });
      } else if (question.class !== CLASS_IN && question.class !== CLASS_ANY) {
        message = responseTo(query, { rcode: Rcode.REFUSED, answers: [], authorities: [] });
      } else {
        message = responseTo(query, resolve(snapshot, question.name, question.type));
        if (query.authenticData === true && isSigned(question.name)) message.authenticData = true;
      }
      if (fault?.spoofFirst) {
        const forged = responseTo(query, {
          rcode: Rcode.NOERROR,
          answers: [
            question.type === RecordType.PTR
              ? { name: question.name, ttl: 86400, class: CLASS_IN, type: 'PTR', target: 'spoofed.attacker.test' }
              : { name: question.name, ttl: 86400, class: CLASS_IN, type: 'A', address: '127.0.0.66' },
          ],
          authorities: [],
        });
        send(encodeMessage({ ...forged, id: (forged.id + 1) & 0xffff }, { maxSize }));
      }
      send(encodeMessage(message, { maxSize }));
    };
    const delay = fault?.delayMs ?? 0;
    if (delay > 0) later(delay, () => guarded(reply, packet, send));
    else reply();
  };

  /** One bad query (or a bug here) earns a SERVFAIL, never a crashed test process. */
  const guarded = (fn: () => void, packet: Buffer, send: (reply: Buffer) => void): void => {
    try {
      fn();
    } catch {
      try {
        if (packet.length >= HEADER_OCTETS) send(headerOnlyReply(packet, Rcode.SERVFAIL));
      } catch {
        // nothing more to do for this query
      }
    }
  };

  udp.on('message', (packet: Buffer, peer: RemoteInfo) => {
    const send = (reply: Buffer): void => {
      if (closed) return;
      udp.send(reply, peer.port, peer.address, () => {
        // Delivery errors (peer gone) are the client's problem, not the server's.
      });
    };
    guarded(() => handle(packet, 'udp', send), packet, send);
  });
  udp.on('error', () => {
    // ICMP-induced errors on an unconnected socket must not kill the server.
  });

  tcp.on('connection', (socket: TcpSocket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {
      // A reset connection only ends that connection.
    });
    const send = (reply: Buffer): void => {
      if (closed || socket.destroyed || !socket.writable) return;
      const frame = Buffer.alloc(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      socket.write(frame);
    };
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < 2 + length) break;
        const packet = Buffer.from(pending.subarray(2, 2 + length));
        pending = pending.subarray(2 + length);
        guarded(() => handle(packet, 'tcp', send), packet, send);
      }
    });
  });
  tcp.on('error', () => {
    // Errors after listen (e.g. EMFILE on accept) must not kill the server.
  });

  const server = isIPv6(host) ? `[${host}]:${bound.port}` : `${host}:${bound.port}`;

  return {
    host,
    port: bound.port,
    server,
    get queries() {
      return queries;
    },
    get log() {
      return log.slice();
    },
    resetStats() {
      queries = 0;
      log = [];
    },
    setFault(name, fault) {
      if (fault) faults.set(keyOf(name), fault);
      else faults.delete(keyOf(name));
    },
    clearFaults() {
      faults.clear();
      defaultFault = undefined;
    },
    setDefaultFault(fault) {
      defaultFault = fault;
    },
    setRecords(next) {
      zone = new ZoneData(next);
    },
    close() {
      closing ??= (async () => {
        closed = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        for (const socket of connections) socket.destroy();
        connections.clear();
        await Promise.all([closeUdp(udp), closeTcp(tcp)]);
      })();
      return closing;
    },
  };
}
