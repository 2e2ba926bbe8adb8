/** What every stand-in does when it runs as a program: announce its address, stop on a signal. */

interface Closable {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Prints one JSON line `{"event":"listening","url":...}` (plus `extra`) for a parent process, and
 * closes the server on SIGTERM or SIGINT.
 */
export function serveUntilSignal<T extends Closable>(
  server: T,
  extra: Readonly<Record<string, unknown>> = {},
): T {
  process.stdout.write(`${JSON.stringify({ event: 'listening', url: server.url, ...extra })}\n`);
  const stop = (): void => {
    void server.close().then(() => {
      process.exitCode = 0;
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return server;
}

/** Runs a stand-in's `main`, exiting 1 with one line on stderr when it cannot start. */
export function runProgram(name: string, main: () => Promise<unknown>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${name}: ${String(error)}\n`);
    process.exit(1);
  });
}

/** A non-negative number from the environment (a port, a delay), or `fallback` when unset. */
export function envNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a non-negative number`);
  }
  return value;
}
