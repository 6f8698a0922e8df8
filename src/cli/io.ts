/** What a command may touch: its output streams and its settings. Injected so tests run commands in-process. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  env: Record<string, string | undefined>;
  cwd: string;
  /**
   * Aborted on Ctrl-C or SIGTERM. A function, so that only a command that runs
   * until stopped (world) takes the signals over: for the others the default,
   * dying at once, is right.
   */
  stopSignal?: () => AbortSignal;
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

/** no-color.org: only a non-empty NO_COLOR turns colour off. */
export function useColor(io: CliIo): boolean {
  return io.stdout.isTTY === true && (io.env.NO_COLOR ?? '') === '' && io.env.TERM !== 'dumb';
}
