/**
 * The README is part of the contract: its code tables and examples are kept
 * in step with the code by these tests.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, WARNING_CODES } from '../src/errors.js';
import { DEFAULTS } from '../src/options.js';

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
    expect(readme.indexOf('npm start')).toBeLessThan(readme.indexOf('## Quick start'));
    expect(readme.indexOf('npm test')).toBeLessThan(readme.indexOf('## Quick start'));
  });
});
