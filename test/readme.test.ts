/**
 * The README is part of the contract: its code tables and examples are kept
 * in step with the code by these tests.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, WARNING_CODES } from '../src/errors.js';
import { CODES } from '../src/codes.js';
import { DEFAULTS } from '../src/options.js';
import { loopbackAddressesInSources } from './support/loopback.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

function tableCodes(text: string): string[] {
  return [...text.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1] ?? '');
}

describe('README', () => {
  it('documents every error and warning code, and no other', () => {
    const documented = tableCodes(section('Error codes')).sort();
    expect(documented).toEqual([...Object.keys(ERROR_CODES), ...Object.keys(WARNING_CODES)].sort());
  });

  it("gives each code's kind, scope, permanence and default severity as the catalogue declares them", () => {
    const rows = [...section('Error codes').matchAll(/^\| `([A-Z_]+)` \| (\w+) \| (\w+) \| ([\w/]+) \| `(\w+)` \|/gm)];
    expect(rows.length).toBe(Object.keys(CODES).length);
    for (const [, code = '', kind, scope, permanent, severity] of rows) {
      const info = CODES[code as keyof typeof CODES];
      expect({ code, kind, scope, permanent, severity }).toEqual({
        code,
        kind: info.kind,
        scope: info.scope,
        permanent: info.kind === 'warning' ? 'n/a' : info.permanent ? 'yes' : 'no',
        severity: info.severity,
      });
    }
  });

  it('states the real defaults', () => {
    const api = section('API');
    expect(api).toContain(`| \`edge.dns.timeout\` | \`${DEFAULTS.timeout}\` |`);
    expect(api).toContain(`| \`edge.dns.minTtl\` | \`${DEFAULTS.minTtl}\` |`);
    expect(api).toContain(`| \`edge.dns.maxTtl\` | \`${DEFAULTS.maxTtl}\` |`);
    expect(api).toContain(`| \`edge.dns.maxNegativeTtl\` | \`${DEFAULTS.maxNegativeTtl}\` |`);
    expect(api).toContain(`| \`edge.dns.staleFor\` | \`${DEFAULTS.staleFor}\` |`);
    expect(api).toContain(`| \`edge.maxPtrNames\` | \`${DEFAULTS.maxPtrNames}\` |`);
  });

  it('shows the testing-kit example exactly as test/readme/testing-kit.test.ts runs it', () => {
    const faq = section('FAQ');
    const block = /```ts\n([\s\S]*?)```/.exec(faq)?.[1];
    expect(block).toBe(readFileSync(new URL('./readme/testing-kit.test.ts', import.meta.url), 'utf8'));
  });

  it('puts the two commands before the quick start', () => {
    const quickStart = readme.indexOf('\n## Quick start\n');
    expect(quickStart).toBeGreaterThan(-1);
    for (const command of ['npm start', 'npm test']) {
      const at = readme.indexOf(command);
      expect(at, `README mentions ${command}`).toBeGreaterThan(-1);
      expect(at, `${command} comes before the quick start`).toBeLessThan(quickStart);
    }
  });

  it('tells macOS users how to add every loopback address the suite binds', () => {
    const text = section('Running the tests');
    // Each line `for i in $(seq A B); do sudo ifconfig lo0 alias 127.X.Y.$i up; done` covers 127.X.Y.A to 127.X.Y.B.
    const ranges = [...text.matchAll(/seq (\d+) (\d+)\); do sudo ifconfig lo0 alias (127\.\d+\.\d+)\.\$i up/g)].map((m) => ({
      prefix: m[3] ?? '',
      from: Number(m[1]),
      to: Number(m[2]),
    }));
    expect(ranges.length).toBeGreaterThan(0);
    const addresses = loopbackAddressesInSources();
    expect(addresses.length).toBeGreaterThan(0);
    const uncovered = addresses.filter((address) => {
      const last = Number(address.slice(address.lastIndexOf('.') + 1));
      const prefix = address.slice(0, address.lastIndexOf('.'));
      return !ranges.some((r) => r.prefix === prefix && last >= r.from && last <= r.to);
    });
    expect(uncovered).toEqual([]);
  });
});
