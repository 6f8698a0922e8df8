/** What a command may touch: its output streams and its settings. Injected so tests run commands in-process. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  env: Record<string, string | undefined>;
  cwd: string;
}

export const EXIT = {
  ok: 0,
  misconfigured: 1,
  temporary: 2,
  usage: 64,
} as const;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function useColor(io: CliIo): boolean {
  return io.stdout.isTTY === true && io.env.NO_COLOR === undefined && io.env.TERM !== 'dumb';
}
