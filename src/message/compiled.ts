/**
 * The header block a message will carry, read from Nodemailer's compiled
 * message without rendering it: what lets mailedge judge a message whose
 * verdict needs no bytes, and let Nodemailer stream it while sending as raw
 * Nodemailer does (no Buffer of the whole message, no second pass).
 *
 * The root node's `buildHeaders()` is the exact text Nodemailer writes first
 * when it streams the message (it also fixes Date, Message-ID and MIME-Version
 * on the root, as the stream would, and keeps them for it); the block built
 * here is the one the stream then writes, so it is built once per message. What comes after
 * it is added here the way Nodemailer's signer adds it: one DKIM-Signature
 * field per key, with the tags that decide a verdict (d=, s=, a=, c= and the
 * signed header names h=, computed as its relaxedHeaders() does); only bh=
 * and b=, which need the bytes, are missing.
 *
 * Undefined when the header block cannot be known without rendering: a raw
 * message, a stream plugin or transform that may rewrite it, a processing step
 * other than Nodemailer's own DKIM signer, a node that is a view of another
 * (direct delivery's per-domain copies carry bytes rendered already), signer
 * options that are not plain.
 */
import type { MailMessage } from 'nodemailer/lib/mailer';
import type { DKIMKey, DKIMOptions } from 'nodemailer/lib/dkim';
import { Cache, systemClock } from '../cache.js';

/** Nodemailer's default signed header list (its dkim/sign.js). */
const DEFAULT_FIELD_NAMES =
  'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:Content-ID:' +
  'Content-Description:Resent-Date:Resent-From:Resent-Sender:Resent-To:Resent-Cc:Resent-Message-ID:In-Reply-To:References:' +
  'List-Id:List-Help:List-Unsubscribe:List-Unsubscribe-Post:List-Subscribe:List-Post:List-Owner:List-Archive:OTP-Token';

/** The internals of Nodemailer's MimeNode read here (plain fields of its class, not in its typings). */
interface NodeInternals {
  rootNode?: unknown;
  _raw?: unknown;
  _transforms?: unknown[];
  _processFuncs?: unknown[];
}

export interface CompiledHeaders {
  /** The root header block as Nodemailer will write it, without the DKIM-Signature fields. */
  block: string;
  /** The DKIM-Signature field values the signer will add (tags without bh= and b=), one per key. */
  signatures: string[];
}

export function compiledHeaders(mail: MailMessage): CompiledHeaders | undefined {
  const node = mail.message as typeof mail.message & NodeInternals;
  if (!node || node.rootNode !== node || Object.prototype.hasOwnProperty.call(node, 'createReadStream')) return undefined;
  if (mail.data.raw !== undefined || node._raw) return undefined;
  if (!Array.isArray(node._transforms) || node._transforms.length > 0 || !Array.isArray(node._processFuncs)) return undefined;
  const signer = signerOptions(mail);
  if (signer === null) return undefined;
  // Nodemailer adds one processing step, its DKIM signer, when the message or the transport signs.
  if (node._processFuncs.length !== (signer ? 1 : 0)) return undefined;
  const block = node.buildHeaders();
  // Nodemailer builds the root's header block again when it streams the message: it is handed the one
  // built here (nothing changes the headers after the transport has the message, and the block already
  // carries the Date, Message-ID and MIME-Version that building it fixed on the root). Set once, for good:
  // writing the field again would change the node's shape under Nodemailer's own code.
  node.buildHeaders = () => block;
  if (!signer) return { block, signatures: [] };
  const names = headerNames(block);
  const h = signedFieldNames(names, signer.options.headerFieldNames ?? DEFAULT_FIELD_NAMES, signer.options.skipFields);
  const a = `rsa-${signer.options.hashAlgo ?? 'sha256'}`;
  const signatures: string[] = [];
  for (const key of signer.keys) {
    const domain = typeof key.domainName === 'string' ? key.domainName : '';
    const selector = typeof key.keySelector === 'string' ? key.keySelector : '';
    // Nodemailer punycodes d=; an IDN signing domain is left to the rendered path.
    if (!/^[\x21-\x7e]+$/.test(domain) || !/^[\x21-\x7e]+$/.test(selector) || /[;=]/.test(domain + selector)) return undefined;
    signatures.push(`v=1; a=${a}; c=relaxed/relaxed; d=${domain.toLowerCase()}; q=dns/txt; s=${selector}; h=${h}`);
  }
  return { block, signatures };
}

/** The signer Nodemailer will use (per message, else the transport's); false for none; null when it cannot be read plainly. */
function signerOptions(mail: MailMessage): { options: DKIMOptions; keys: DKIMKey[] } | false | null {
  const own = mail.data.dkim;
  const transport = mail.mailer?.dkim;
  const options: DKIMOptions | undefined = own ? own : transport ? transport.options : undefined;
  if (!options) return false;
  // The message's _dkim options are merged under the signer's (Nodemailer's DKIM#sign); rare, left to the rendered path.
  if (mail.data._dkim && Object.keys(mail.data._dkim).length > 0) return null;
  const keys = own ? [options.keys ?? { domainName: options.domainName, keySelector: options.keySelector, privateKey: options.privateKey }].flat() : (transport as { keys: DKIMKey[] }).keys;
  if (keys.length === 0) return null;
  for (const value of [options.headerFieldNames, options.skipFields, options.hashAlgo]) if (value !== undefined && typeof value !== 'string') return null;
  return { options, keys };
}

/** The lower-case names of a header block's fields, in order. */
function headerNames(block: string): string[] {
  const names: string[] = [];
  for (const line of block.split('\r\n')) {
    if (line === '' || line[0] === ' ' || line[0] === '\t') continue;
    const colon = line.indexOf(':');
    if (colon > 0) names.push(line.slice(0, colon).trim().toLowerCase());
  }
  return names;
}

/** h= as Nodemailer's relaxedHeaders() builds it: the listed names, minus skipFields, in list order, that the message has. */
export function signedFieldNames(present: readonly string[], fieldNames: string, skipFields: string | undefined): string {
  const key = `${fieldNames}\n${skipFields ?? ''}`;
  let included = signable.get(key);
  if (!included) {
    const skip = new Set((skipFields ?? '').toLowerCase().split(':').map((f) => f.trim()));
    included = [...new Set(fieldNames.toLowerCase().split(':').filter((f) => !skip.has(f.trim())).map((f) => f.trim()))];
    signable.set(key, included, Infinity);
  }
  const have = new Set(present);
  return included.filter((f) => have.has(f)).join(':');
}

/** The signable names per (headerFieldNames, skipFields): the same few lists for every message. */
const signable = new Cache<string, string[]>({ name: 'signed header lists', max: 100, clock: systemClock });
