import { constants } from 'node:os';
import type { Logger, RunningWorker } from '../../lib/index.ts';

export interface SignalOptions {
  /** Runs after the drain, before exiting (the dev stack closes its stand-ins here). */
  after?: () => Promise<unknown>;
}

/**
 * SIGTERM or SIGINT drains the worker gracefully (lib/server/shutdown.ts) and exits 0. A second
 * signal exits at once with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), the
 * shell's convention for "killed by a signal".
 */
export function drainOnSignals(
  running: RunningWorker,
  logger: Logger,
  options: SignalOptions = {},
): void {
  const log = logger.child({ component: 'shutdown' });
  let first: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (first !== undefined) {
      const exitCode = 128 + (constants.signals[signal] ?? 0);
      log.warn({ signal, exitCode }, `second signal: exiting at once with code ${exitCode}`);
      process.exit(exitCode);
    }
    first = signal;
    log.info({ signal }, 'signal received: draining (send it again to exit at once)');
    running
      .drain()
      .then(() => options.after?.())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log.fatal({ err: error }, 'drain failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
