/**
 * DANE for SMTP (RFC 7672): the TLSA records of an MX host, and whether the
 * certificate chain a server presented matches one of them. Only DANE-TA(2)
 * and DANE-EE(3) are usable for SMTP (section 3.1.3); PKIX-TA(0) and
 * PKIX-EE(1) are ignored, as RFC 7672 says.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { Lookup, Resolver } from '../dns/resolver.js';

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  /** Hex, lower case. */
  data: string;
}

const TLSA_TYPE = 52;

/** Records with usage 2 or 3, selector 0 (certificate) or 1 (SPKI) and matching type 0, 1 (SHA-256) or 2 (SHA-512). */
export function usable(record: TlsaRecord): boolean {
  return (record.usage === 2 || record.usage === 3) && (record.selector === 0 || record.selector === 1) && record.matchingType >= 0 && record.matchingType <= 2;
}

export function tlsaText(record: TlsaRecord): string {
  return `${record.usage} ${record.selector} ${record.matchingType} ${record.data}`;
}

/** The TLSA records of an answer (raw RDATA: usage, selector, matching type, association data). */
export function tlsaRecords(lookup: Lookup): TlsaRecord[] {
  if (lookup.kind !== 'answer') return [];
  return lookup.records.flatMap((record) => {
    if (record.type !== 'OTHER' || record.typeCode !== TLSA_TYPE || record.raw.length < 4) return [];
    const [usage, selector, matchingType] = [record.raw[0] ?? 0, record.raw[1] ?? 0, record.raw[2] ?? 0];
    return [{ usage, selector, matchingType, data: record.raw.subarray(3).toString('hex') }];
  });
}

/** The TLSA owner for an MX host: port 25 always, since that is where MX hosts listen (RFC 7672 section 2.2). */
export function tlsaName(host: string): string {
  return `_25._tcp.${host.replace(/\.$/, '')}`;
}

export async function lookupTlsa(host: string, resolver: Resolver, signal: AbortSignal): Promise<Lookup> {
  return resolver.lookup(tlsaName(host), 'TLSA', signal);
}

/** The RDATA a fixture zone serves for a TLSA record of this certificate (tests, and `mailedge check` hints). */
export function tlsaRdata(usage: number, selector: number, matchingType: number, certificate: string | Buffer): Buffer {
  const cert = new X509Certificate(certificate);
  return Buffer.concat([Buffer.from([usage, selector, matchingType]), associationData(cert, selector, matchingType)]);
}

function associationData(cert: X509Certificate, selector: number, matchingType: number): Buffer {
  const selected = selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' });
  if (matchingType === 1) return createHash('sha256').update(selected).digest();
  if (matchingType === 2) return createHash('sha512').update(selected).digest();
  return selected;
}

function matches(record: TlsaRecord, cert: X509Certificate): boolean {
  return associationData(cert, record.selector, record.matchingType).toString('hex') === record.data.toLowerCase();
}

export type DaneVerdict = { ok: true; matched: TlsaRecord } | { ok: false; reason: string };

/**
 * RFC 7672 section 3.1: DANE-EE(3) matches the server's own certificate, and
 * then its names and dates do not matter. DANE-TA(2) matches a certificate of
 * the presented chain, from which the server certificate must chain by
 * signature, be within its dates, and carry the MX host name (section 3.2.2).
 * `chain` is the presented chain, server certificate first.
 */
export function daneMatch(records: readonly TlsaRecord[], chain: readonly X509Certificate[], host: string, now: Date): DaneVerdict {
  const leaf = chain[0];
  if (!leaf) return { ok: false, reason: 'the server presented no certificate' };
  for (const record of records.filter((r) => r.usage === 3)) {
    if (matches(record, leaf)) return { ok: true, matched: record };
  }
  // Every DANE-TA record is tried (a domain rolling its CA publishes two); the first refusal is the one reported.
  let refusal: string | undefined;
  for (const record of records.filter((r) => r.usage === 2)) {
    const anchorIndex = chain.findIndex((cert) => matches(record, cert));
    if (anchorIndex < 0) continue;
    const problem = pathProblem(chain, anchorIndex, now);
    if (problem !== null) {
      refusal ??= `${problem} (DANE-TA ${tlsaText(record)})`;
      continue;
    }
    if (leaf.checkHost(host.replace(/\.$/, '')) === undefined) {
      refusal ??= `the certificate is not valid for ${host} (${leaf.subjectAltName ?? leaf.subject})`;
      continue;
    }
    return { ok: true, matched: record };
  }
  if (refusal !== undefined) return { ok: false, reason: refusal };
  const ee = chain[0] ? createHash('sha256').update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('hex') : '';
  return { ok: false, reason: `no usable TLSA record matches the presented chain (server key SHA-256 ${ee}; records: ${records.map(tlsaText).join(', ') || 'none'})` };
}

/**
 * Why the presented path from the server's certificate up to the DANE-TA
 * anchor (chain[anchorIndex]) is no certification path, or null when it is
 * one: each certificate issued and signed by the next, every issuer a CA
 * (basicConstraints CA:true, within its pathLenConstraint) whose keyUsage,
 * when present, allows keyCertSign, and every certificate within its dates.
 * Names and signatures alone would let any certificate the anchor issued (a
 * web server's, CA:false) sign one for the MX host name (RFC 5280 sections
 * 4.2.1.3 and 4.2.1.9; OpenSSL, which Postfix's DANE uses, refuses it too).
 */
function pathProblem(chain: readonly X509Certificate[], anchorIndex: number, now: Date): string | null {
  for (let i = 0; i <= anchorIndex; i++) {
    const cert = chain[i];
    if (!cert) return 'the presented chain is shorter than the path to the anchor';
    const what = i === 0 ? 'the certificate' : `the issuing certificate ${cert.subject.replace(/\n/g, ', ')}`;
    const notBefore = new Date(cert.validFrom);
    const notAfter = new Date(cert.validTo);
    if (!(now >= notBefore && now <= notAfter)) return `${what} is outside its dates (${cert.validFrom} to ${cert.validTo})`;
    if (i === 0) continue;
    const issued = chain[i - 1];
    if (!issued || !issued.checkIssued(cert) || !issued.verify(cert.publicKey)) return 'the certificate does not chain to the DANE-TA certificate';
    // X509Certificate.ca is OpenSSL's X509_check_ca() === 1: basicConstraints with CA:true.
    if (!cert.ca) return `${what} is not a CA (basicConstraints CA:false or absent) and may not issue certificates`;
    const constraints = caConstraints(cert.raw);
    if (constraints === 'malformed') return `${what} has extensions that cannot be read`;
    if (constraints.keyUsage !== undefined && !constraints.keyUsage.keyCertSign) return `${what} has a keyUsage without keyCertSign and may not issue certificates`;
    // RFC 5280 section 4.2.1.9: at most pathLen CA certificates below this one, the server's own not counted.
    if (constraints.pathLen !== undefined && i - 1 > constraints.pathLen) return `${what} allows ${constraints.pathLen} CA certificate(s) below it, the path has ${i - 1}`;
  }
  return null;
}

/**
 * What Node's X509Certificate does not expose: the keyUsage bits
 * (X509Certificate.keyUsage is the extended key usage) and basicConstraints'
 * pathLenConstraint, read from the DER. Anything unreadable is 'malformed',
 * which refuses the path.
 */
function caConstraints(der: Buffer): { keyUsage?: { keyCertSign: boolean }; pathLen?: number } | 'malformed' {
  const extensions = certificateExtensions(der);
  if (extensions === 'malformed') return 'malformed';
  const result: { keyUsage?: { keyCertSign: boolean }; pathLen?: number } = {};
  const keyUsage = extensions.get(OID_KEY_USAGE);
  if (keyUsage) {
    const bits = readTlv(keyUsage, 0);
    if (!bits || bits.tag !== 0x03 || bits.end !== keyUsage.length || bits.end - bits.start < 1) return 'malformed';
    // Bit 5 (keyCertSign) of the first byte after the unused-bits count: 0x80 >> 5.
    result.keyUsage = { keyCertSign: bits.end - bits.start >= 2 && ((keyUsage[bits.start + 1] ?? 0) & 0x04) !== 0 };
  }
  const basic = extensions.get(OID_BASIC_CONSTRAINTS);
  if (basic) {
    const sequence = readTlv(basic, 0);
    if (!sequence || sequence.tag !== 0x30) return 'malformed';
    const fields = children(basic, sequence);
    if (fields === 'malformed') return 'malformed';
    const integer = fields.find((f) => f.tag === 0x02);
    if (integer) {
      const length = integer.end - integer.start;
      if (length < 1 || length > 4) return 'malformed';
      result.pathLen = basic.subarray(integer.start, integer.end).readUIntBE(0, length);
    }
  }
  return result;
}

const OID_KEY_USAGE = '551d0f';
const OID_BASIC_CONSTRAINTS = '551d13';

interface Tlv {
  tag: number;
  /** Where the contents start and end in the buffer. */
  start: number;
  end: number;
}

function readTlv(buf: Buffer, offset: number): Tlv | undefined {
  const tag = buf[offset];
  const first = buf[offset + 1];
  if (tag === undefined || first === undefined) return undefined;
  let length = first;
  let start = offset + 2;
  if (first & 0x80) {
    const octets = first & 0x7f;
    if (octets < 1 || octets > 4 || start + octets > buf.length) return undefined;
    length = buf.readUIntBE(start, octets);
    start += octets;
  }
  const end = start + length;
  return end <= buf.length ? { tag, start, end } : undefined;
}

function children(buf: Buffer, parent: Tlv): Tlv[] | 'malformed' {
  const list: Tlv[] = [];
  for (let offset = parent.start; offset < parent.end; ) {
    const child = readTlv(buf, offset);
    if (!child || child.end > parent.end) return 'malformed';
    list.push(child);
    offset = child.end;
  }
  return list;
}

/** The extensions of a certificate, by OID (hex of its DER contents), each the contents of its extnValue. */
function certificateExtensions(der: Buffer): Map<string, Buffer> | 'malformed' {
  const certificate = readTlv(der, 0);
  if (!certificate || certificate.tag !== 0x30) return 'malformed';
  const tbs = readTlv(der, certificate.start);
  if (!tbs || tbs.tag !== 0x30) return 'malformed';
  const fields = children(der, tbs);
  if (fields === 'malformed') return 'malformed';
  const map = new Map<string, Buffer>();
  // [3] EXPLICIT Extensions, the last field of TBSCertificate (RFC 5280 section 4.1).
  const wrapper = fields.find((f) => f.tag === 0xa3);
  if (!wrapper) return map;
  const list = readTlv(der, wrapper.start);
  if (!list || list.tag !== 0x30) return 'malformed';
  const extensions = children(der, list);
  if (extensions === 'malformed') return 'malformed';
  for (const extension of extensions) {
    const parts = children(der, extension);
    if (parts === 'malformed') return 'malformed';
    const oid = parts[0];
    const value = parts[parts.length - 1];
    if (!oid || oid.tag !== 0x06 || !value || value.tag !== 0x04) return 'malformed';
    const key = der.subarray(oid.start, oid.end).toString('hex');
    // RFC 5280 section 4.2: a certificate carries each extension once.
    if (map.has(key)) return 'malformed';
    map.set(key, der.subarray(value.start, value.end));
  }
  return map;
}
