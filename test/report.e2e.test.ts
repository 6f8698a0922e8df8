/**
 * The report as the CLI prints it, from real runs against the test world:
 * `--json` output validated against docs/report.schema.json by a validator
 * small enough to read (only the keywords the schema uses), and the human
 * form pinned by a snapshot.
 */
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from './support/world.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';
import { ERROR_CODES, WARNING_CODES } from '../src/errors.js';
import { DELIVERABILITY_CHECK_IDS, IDENTITY_CHECK_IDS } from '../src/checks/registry.js';

let world: World;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world.close();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Stands for the fixture server's address, which is known only once the world runs (it.each tables are built before). */
const DNS = '@dns';

/** One in-process CLI run with in-memory streams. */
async function cli(args: string[], { tty = false, env = { NO_COLOR: '1' } }: { tty?: boolean; env?: Record<string, string> } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text), isTTY: tty },
    stderr: { write: (text: string) => (stderr += text) },
    env,
    cwd: mkdtempSync(join(tmpdir(), 'mailedge-report-')),
  };
  const code = await runCli(args.map((a) => (a === DNS ? world.dns.server : a)), io);
  return { code, stdout, stderr };
}

const check = (local: string, ...extra: string[]): string[] => ['check', '--local-address', local, '--dns', DNS, ...extra];

// ---- a JSON Schema validator for the keywords docs/report.schema.json uses, and no others

interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  enum?: unknown[];
  items?: Schema;
  const?: unknown;
  additionalProperties?: boolean;
}

const ANNOTATIONS = new Set(['$schema', 'title', 'description']);
const KEYWORDS = new Set(['type', 'properties', 'required', 'enum', 'items', 'const', 'additionalProperties']);

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value === 'number' && Number.isInteger(value) ? 'integer' : typeof value;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Every way `value` breaks `schema`, as "path: problem" lines; empty when it is valid. */
function validate(schema: Schema, value: unknown, path = '$'): string[] {
  const errors: string[] = [];
  for (const key of Object.keys(schema)) {
    if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key)) errors.push(`${path}: the schema uses "${key}", which this validator does not support`);
  }
  if (schema.type !== undefined) {
    const allowed = Array.isArray(schema.type) ? schema.type : [schema.type];
    const actual = typeOf(value);
    if (!allowed.includes(actual) && !(actual === 'integer' && allowed.includes('number'))) errors.push(`${path}: expected ${allowed.join(' or ')}, got ${actual}`);
  }
  if ('const' in schema && !same(schema.const, value)) errors.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.some((option) => same(option, value))) errors.push(`${path}: ${JSON.stringify(value)} is not one of the allowed values`);
  if (typeOf(value) === 'object') {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in object)) errors.push(`${path}: missing "${key}"`);
    for (const [key, child] of Object.entries(object)) {
      const property = schema.properties?.[key];
      if (property) errors.push(...validate(property, child, `${path}.${key}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: "${key}" is not in the schema`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => errors.push(...validate(schema.items as Schema, item, `${path}[${i}]`)));
  return errors;
}

const schema = JSON.parse(readFileSync(new URL('../docs/report.schema.json', import.meta.url), 'utf8')) as Schema & Record<string, unknown>;

describe('docs/report.schema.json', () => {
  it('is a draft 2020-12 schema of report version 1, naming every check id and code', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.properties?.schema?.const).toBe(1);
    const item = schema.properties?.checks?.items;
    expect([...(item?.properties?.id?.enum ?? [])].sort()).toEqual([...IDENTITY_CHECK_IDS, ...DELIVERABILITY_CHECK_IDS].sort());
    expect(item?.properties?.code?.enum).toEqual([...Object.keys(ERROR_CODES), ...Object.keys(WARNING_CODES), null]);
  });

  it('has a validator that finds what is wrong', () => {
    expect(validate(schema, { schema: 2 })).toEqual(
      expect.arrayContaining(['$.schema: expected 1', '$: missing "ok"', '$: missing "checks"']),
    );
    const bad = { id: 'spf', status: 'pass', severity: 'warn', expected: '', actual: '', code: 'NOPE', hint: null, evidence: [1], extra: true };
    const report = { schema: 1, ok: true, address: null, name: null, destination: null, stale: false, checks: [bad], ptrNames: [] };
    expect(validate(schema, report)).toEqual([
      '$.checks[0].code: "NOPE" is not one of the allowed values',
      '$.checks[0].evidence[0]: expected string, got integer',
      '$.checks[0]: "extra" is not in the schema',
    ]);
  });

  it.each([
    ['a confirmed host, a sender and two recipients (one at a null MX)', check('127.0.0.2', '--host', 'smtp.relay.test', '--from', 'app@sender.test', '--to', 'a@example.test', '--to', 'b@nullmx.example.test'), 1],
    ['a generic PTR name and a sender with warnings', check('127.0.0.13', '--from', 'app@lax.test'), 0],
    ['the null sender', check('127.0.0.2', '--from', '<>'), 0],
    ['a failing SPF record, warn-level', check('127.0.0.2', '--from', 'app@fail.sender.test'), 0],
    ['a forward mismatch', check('127.0.0.3', '--from', 'app@sender.test'), 1],
    ['no PTR', check('127.0.0.4'), 1],
    ['a stale second PTR name', check('127.0.0.5'), 1],
    ['a PTR name with CR LF', check('127.0.0.8'), 1],
    ['a CNAME in the chain', check('127.0.0.7'), 0],
    ['an unresolvable destination', check('127.0.0.2', '--host', 'nowhere.test'), 1],
    ['a pool with one bad member', check('127.0.0.2', '--local-address', '127.0.0.3', '--host', 'smtp.relay.test', '--from', 'app@sender.test', '--to', 'a@example.test'), 0],
    ['a pool where every member fails', check('127.0.0.3', '--local-address', '127.0.0.4'), 1],
    ['DNS unreachable', ['check', '--local-address', '127.0.0.2', '--dns', '127.0.0.1:9', '--dns-timeout', '500', '--from', 'app@sender.test', '--to', 'a@example.test'], 2],
  ])('validates the --json report of %s', async (_what, args, exit) => {
    const result = await cli([...args, '--json']);
    expect(result.code).toBe(exit);
    const report = JSON.parse(result.stdout) as unknown;
    expect(validate(schema, report)).toEqual([]);
  });
});

describe('the human report', () => {
  /** Nothing in the report should vary between runs, but a port or a duration must not break the snapshot if one appears. */
  function normalised(text: string): string {
    return text.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT').replace(/\b\d+ ?ms\b/g, 'N ms');
  }

  it('matches the snapshot of real runs', async () => {
    const runs = [
      check('127.0.0.2', '--host', 'smtp.relay.test', '--from', 'app@sender.test', '--to', 'someone@example.test', '--to', 'nobody@nullmx.example.test'),
      check('127.0.0.3'),
      check('127.0.0.7', '--from', 'app@lax.test'),
    ];
    const outputs: string[] = [];
    for (const args of runs) {
      const result = await cli(args);
      outputs.push(`$ mailedge ${args.join(' ')}\n(exit ${result.code})\n${result.stdout}`);
    }
    const text = normalised(outputs.join('\n'));
    expect(text).not.toMatch(/\u001b\[/);
    expect(text).toMatchSnapshot();
  });

  it('uses colour only on a terminal, and never with NO_COLOR', async () => {
    const args = check('127.0.0.2');
    expect((await cli(args, { tty: true, env: {} })).stdout).toContain('\u001b[32m✔\u001b[0m');
    expect((await cli(args, { tty: true, env: { NO_COLOR: '1' } })).stdout).not.toMatch(/\u001b\[/);
    expect((await cli(args, { tty: false, env: {} })).stdout).not.toMatch(/\u001b\[/);
  });
});
