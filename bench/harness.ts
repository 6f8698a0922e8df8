/** Shared by the benchmark and the load script: the world process and small statistics. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorldRequest, WorldStats } from './world.js';

type Op = WorldRequest extends infer R ? (R extends { op: infer O } ? O : never) : never;

export interface WorldProcess {
  dnsServer: string;
  port: number;
  request(op: 'stats', extra?: { sessions?: boolean }): Promise<WorldStats>;
  request(op: Exclude<Op, 'stats'>, extra?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

export async function startWorldProcess(zone: string): Promise<WorldProcess> {
  const child: ChildProcess = fork(fileURLToPath(new URL('./world.js', import.meta.url)), [], {
    env: { ...process.env, BENCH_ZONE: zone },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 1;
  const pending = new Map<number, (body: unknown) => void>();
  const ready = await new Promise<{ dnsServer: string; port: number }>((resolve, reject) => {
    child.once('error', reject);
    child.on('message', (message: { ready?: boolean; dnsServer?: string; port?: number; id?: number; body?: unknown }) => {
      if (message.ready) resolve({ dnsServer: message.dnsServer ?? '', port: message.port ?? 0 });
      else if (message.id !== undefined) {
        pending.get(message.id)?.(message.body);
        pending.delete(message.id);
      }
    });
  });
  const request = (op: Op, extra: Record<string, unknown> = {}): Promise<unknown> =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      child.send({ id, op, ...extra });
    });
  return {
    ...ready,
    request: request as WorldProcess['request'],
    close: () => child.disconnect(),
  };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Runs `task` for each index with at most `concurrency` in flight. */
export async function runConcurrently(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Runs `task` with `concurrency` in flight until `endAt`; every task started is awaited before it resolves. */
export async function runUntil(endAt: number, concurrency: number, task: () => Promise<void>): Promise<void> {
  const worker = async (): Promise<void> => {
    while (Date.now() < endAt) await task();
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export function flag(args: string[], name: string): string | undefined {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : undefined;
}

/** Sending hosts 127.0.0.10 to 127.0.0.73, each confirmed as benchN.good.test. */
export const BENCH_HOSTS = Array.from({ length: 64 }, (_, i) => ({ address: `127.0.0.${10 + i}`, name: `bench${10 + i}.good.test` }));

export const BENCH_ZONE = `
$TTL 300
$ORIGIN test.
@          IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 60 )
mail.good  IN A   127.0.0.2
a.both     IN A   127.0.0.6
b.both     IN A   127.0.0.6
relay      IN A   127.0.0.1
${BENCH_HOSTS.map((h) => `${h.name}. IN A ${h.address}`).join('\n')}
$ORIGIN 127.in-addr.arpa.
@          IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 60 )
2.0.0      IN PTR mail.good.test.
6.0.0      IN PTR a.both.test.
6.0.0      IN PTR b.both.test.
${BENCH_HOSTS.map((h) => `${h.address.split('.').reverse().join('.')}.in-addr.arpa. IN PTR ${h.name}.`).join('\n')}
`;
