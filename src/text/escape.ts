/**
 * Text that a terminal or a log line would interpret rather than show: C0
 * controls (CR LF forge log lines, ESC starts terminal sequences), DEL, C1
 * controls (U+009B is a one-character CSI on many terminals), bidirectional
 * embeddings, overrides, isolates and marks (they reorder what is read), the
 * Unicode line and paragraph separators, and lone surrogates (no character at
 * all). Matched by code point, so valid UTF-8 text such as "€" or "café" stays
 * as it is.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]/u;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'gu');

/**
 * `text` with every unsafe code point shown as an escape: `\DDD` (decimal,
 * as DNS presentation form and dig write a byte) up to U+00FF, `\u{XXXX}`
 * above. Backslashes are left alone, so escaping twice changes nothing and a
 * name already in presentation form (`mail\013\010rset.test`) reads the same.
 */
export function escapeText(text: string): string {
  if (!UNSAFE.test(text)) return text;
  return text.replace(UNSAFE_ALL, (c) => {
    const code = c.codePointAt(0) ?? 0;
    return code <= 0xff ? `\\${code.toString().padStart(3, '0')}` : `\\u{${code.toString(16).toUpperCase().padStart(4, '0')}}`;
  });
}

/** Reports nest a few levels (report, members, checks, evidence); anything deeper is not ours and is left alone. */
const MAX_DEPTH = 8;

/**
 * A copy of a JSON-like value with every string in it escaped: for renderers
 * that print whole structures (the `--json` report), as the second line of
 * defence behind the checks' own escaping.
 */
export function escapeDeep<T>(value: T): T {
  return escapeValue(value, 0) as T;
}

function escapeValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return escapeText(value);
  if (depth >= MAX_DEPTH || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => escapeValue(item, depth + 1));
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [escapeText(key), escapeValue(item, depth + 1)]));
}
