/**
 * TXT data arrives as bytes, which the DNS client keeps one byte per UTF-16
 * unit (latin1) so that nothing is lost on the way. For reading, those bytes
 * are UTF-8 where they form valid UTF-8 (a DMARC rua with "€" in it), and
 * `\DDD` where they do not: an invalid byte is not a character, and showing it
 * as its Latin-1 lookalike (0x9B as the C1 control CSI, 0xE9 as "é") would
 * either reach a terminal raw or say something the record does not.
 */
const fatal = new TextDecoder('utf-8', { fatal: true });

export function decodeDnsText(bytes: string): string {
  // Pure ASCII reads the same either way; a code unit above 0xFF means this is text already, not bytes.
  if (!/[^\x00-\x7f]/.test(bytes) || /[^\x00-\xff]/.test(bytes)) return bytes;
  const buffer = Buffer.from(bytes, 'latin1');
  try {
    return fatal.decode(buffer);
  } catch {
    return decodeLeniently(buffer);
  }
}

function decodeLeniently(buffer: Buffer): string {
  let out = '';
  for (let i = 0; i < buffer.length; ) {
    const lead = buffer[i] ?? 0;
    const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length === 1) {
      out += String.fromCharCode(lead);
      i += 1;
      continue;
    }
    if (length > 0 && i + length <= buffer.length) {
      try {
        // The fatal decoder also rejects overlong forms and encoded surrogates.
        out += fatal.decode(buffer.subarray(i, i + length));
        i += length;
        continue;
      } catch {
        // not a valid sequence: fall through to the byte escape
      }
    }
    out += `\\${lead.toString().padStart(3, '0')}`;
    i += 1;
  }
  return out;
}
