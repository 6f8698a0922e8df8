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
  for (const record of records.filter((r) => r.usage === 2)) {
    const anchorIndex = chain.findIndex((cert) => matches(record, cert));
    if (anchorIndex < 0) continue;
    if (!chainsTo(chain, anchorIndex)) return { ok: false, reason: `the certificate does not chain to the DANE-TA certificate (${tlsaText(record)})` };
    const notBefore = new Date(leaf.validFrom);
    const notAfter = new Date(leaf.validTo);
    if (now < notBefore || now > notAfter) return { ok: false, reason: `the certificate is outside its dates (${leaf.validFrom} to ${leaf.validTo})` };
    if (leaf.checkHost(host.replace(/\.$/, '')) === undefined) return { ok: false, reason: `the certificate is not valid for ${host} (${leaf.subjectAltName ?? leaf.subject})` };
    return { ok: true, matched: record };
  }
  const ee = chain[0] ? createHash('sha256').update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('hex') : '';
  return { ok: false, reason: `no usable TLSA record matches the presented chain (server key SHA-256 ${ee}; records: ${records.map(tlsaText).join(', ') || 'none'})` };
}

/** Each certificate from the server's down to the anchor is issued and signed by the next. */
function chainsTo(chain: readonly X509Certificate[], anchorIndex: number): boolean {
  for (let i = 0; i < anchorIndex; i++) {
    const cert = chain[i];
    const issuer = chain[i + 1];
    if (!cert || !issuer || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) return false;
  }
  return true;
}
