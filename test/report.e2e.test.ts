/**
 * The report as the CLI prints it, from real runs against the test world:
 * `--json` output validated against docs/report.schema.json with Ajv (draft
 * 2020-12), both as published (open: later ids, codes and fields pass) and
 * closed (mailedge's own output is fully documented), and the human form
 * pinned by a snapshot.
 */
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { startWorld, type World } from './support/world.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';
import { ERROR_CODES, WARNING_CODES } from '../src/errors.js';
import { DELIVERABILITY_CHECK_IDS, IDENTITY_CHECK_IDS } from '../src/checks/registry.js';
import { preflight } from '../src/preflight.js';
import { toJsonReport } from '../src/report/json.js';

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

// ---- docs/report.schema.json, checked by a real JSON Schema validator (Ajv, draft 2020-12)

interface SchemaNode {
  [keyword: string]: unknown;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  examples?: unknown[];
}

const schema = JSON.parse(readFileSync(new URL('../docs/report.schema.json', import.meta.url), 'utf8')) as SchemaNode;

/**
 * The published schema is open (later ids, codes and fields validate). mailedge's own
 * reports must also be fully documented: this copy closes every object
 * (additionalProperties: false) and allows only the ids and codes the schema lists.
 */
function closed(node: SchemaNode): SchemaNode {
  const copy: SchemaNode = { ...node };
  if (node.properties) {
    copy.properties = Object.fromEntries(Object.entries(node.properties).map(([key, child]) => [key, closed(child)]));
    copy.additionalProperties = false;
  }
  if (node.items) copy.items = closed(node.items);
  return copy;
}
const checkItem = schema.properties?.checks?.items;
const knownIds = checkItem?.properties?.id?.examples ?? [];
const knownCodes = checkItem?.properties?.code?.examples ?? [];
const strictSchema = closed(schema);
const strictCheck = strictSchema.properties?.checks?.items?.properties;
if (strictCheck?.id && strictCheck.code) {
  strictCheck.id = { ...strictCheck.id, enum: knownIds };
  strictCheck.code = { ...strictCheck.code, enum: [...knownCodes, null] };
}

const ajv = new Ajv2020({ allErrors: true, strict: true });
const validateOpen = ajv.compile(schema);
const validateStrict = ajv.compile(strictSchema);

/** Every way `value` breaks the schema, as "path: message" lines; empty when it is valid. */
function problems(validate: ValidateFunction, value: unknown): string[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'}: ${e.message ?? e.keyword}${e.keyword === 'additionalProperties' ? ` (${String(e.params['additionalProperty'])})` : ''}`);
}

/** A report that only a later mailedge could write: a new check id, a new code, new fields. */
const FUTURE_REPORT = {
  schema: 1, ok: true, address: '127.0.0.2', name: 'mail.good.test', destination: null, stale: false,
  checks: [{ id: 'arc-seal', status: 'warn', severity: 'warn', expected: 'x', actual: 'y', code: 'ARC_UNSEALED', hint: null, evidence: [], confidence: 0.5 }],
  ptrNames: [{ name: 'mail.good.test', invalid: null, addresses: ['127.0.0.2'], cnames: [], outcome: 'answer', confirms: true, ttl: 300 }],
  elapsedMs: 12,
};

describe('docs/report.schema.json', () => {
  it('is a draft 2020-12 schema of report version 1, listing every check id and code mailedge has', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.properties?.schema?.const).toBe(1);
    expect([...knownIds].sort()).toEqual([...IDENTITY_CHECK_IDS, ...DELIVERABILITY_CHECK_IDS].sort());
    expect([...knownCodes].sort()).toEqual([...Object.keys(ERROR_CODES), ...Object.keys(WARNING_CODES)].sort());
  });

  it('accepts a later report with an unknown check id, an unknown code and extra fields (open lists)', () => {
    expect(problems(validateOpen, FUTURE_REPORT)).toEqual([]);
    expect(problems(validateOpen, { ...FUTURE_REPORT, members: [{ localAddress: '127.0.0.2', publicAddress: null, ...FUTURE_REPORT, schema: undefined }] })).toEqual([]);
    // The strict copy used for mailedge's own reports does tell them apart.
    expect(problems(validateStrict, FUTURE_REPORT)).toEqual(
      expect.arrayContaining(['/: must NOT have additional properties (elapsedMs)', '/checks/0/id: must be equal to one of the allowed values', '/checks/0/code: must be equal to one of the allowed values']),
    );
  });

  it('still refuses what breaks schema 1: a wrong version, missing fields, wrong types, an unknown status', () => {
    expect(problems(validateOpen, { schema: 2 })).toEqual(
      expect.arrayContaining(['/schema: must be equal to constant', "/: must have required property 'ok'", "/: must have required property 'checks'"]),
    );
    const bad = { id: 'spf', status: 'great', severity: 'warn', expected: '', actual: '', code: 7, hint: null, evidence: [1] };
    const report = { schema: 1, ok: true, address: null, name: null, destination: null, stale: false, checks: [bad], ptrNames: [] };
    expect(problems(validateOpen, report)).toEqual([
      '/checks/0/status: must be equal to one of the allowed values',
      '/checks/0/code: must be string,null',
      '/checks/0/evidence/0: must be string',
    ]);
  });

  it.each([
    ['a confirmed host, a sender and two recipients (one at a null MX)', check('127.0.0.2', '--host', 'smtp.relay.test', '--from', 'app@sender.test', '--to', 'a@example.test', '--to', 'b@nullmx.example.test'), 1],
    ['a generic PTR name and a sender with warnings', check('127.0.0.13', '--from', 'app@lax.test'), 0],
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
    const report = JSON.parse(result.stdout) as { checks?: unknown[] };
    expect(report.checks?.length).toBeGreaterThan(0);
    expect(problems(validateOpen, report)).toEqual([]);
    expect(problems(validateStrict, report)).toEqual([]);
  });

  it('validates the report of the null sender (the CLI takes addresses only; the library takes <>)', async () => {
    const report = toJsonReport(await preflight({ localAddress: '127.0.0.2', edge: { dns: { servers: [world.dns.server] } } }, { from: '<>' }));
    expect(report.checks.length).toBeGreaterThan(0);
    expect(problems(validateOpen, report)).toEqual([]);
    expect(problems(validateStrict, report)).toEqual([]);
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
