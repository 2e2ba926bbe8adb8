import { constants } from 'node:os';
import type { Logger, RunningWorker } from '../../lib/entry-server.ts';

export interface SignalOptions {
  /** Runs after the drain, before exiting (the dev stack closes its stand-ins here). */
  after?: () => Promise<unknown>;
  /** A signal that arrived while the worker started (`catchEarlySignals`): drain at once. */
  pending?: NodeJS.Signals | undefined;
}

/**
 * Holds SIGTERM and SIGINT while the worker starts, before `drainOnSignals` can take them: without
 * it, a signal sent right after the "worker listening" line would kill the process undrained.
 */
export function catchEarlySignals(): {
  readonly received: () => NodeJS.Signals | undefined;
  release(): void;
} {
  let received: NodeJS.Signals | undefined;
  const hold = (signal: NodeJS.Signals): void => {
    received ??= signal;
  };
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
  return {
    received: () => received,
    release: () => {
      process.off('SIGTERM', hold);
      process.off('SIGINT', hold);
    },
  };
}

/** How often a worker started by npm looks whether its parent is still there. */
const PARENT_POLL_MS = 500;

/**
 * The parent as this module is loaded, early in start-up: a parent that dies while the worker
 * starts (before `onParentExit` is called) is still seen as gone.
 */
const STARTED_BY = process.ppid;

/**
 * Calls `onExit` once when the process that started this one exits, if npm or npx started it
 * (`npm_lifecycle_event` is set); returns a function that stops watching.
 *
 * npm runs a script or a bin through `sh -c`, and forwards SIGTERM to that shell only. dash dies of
 * it without passing it on, so `npm start`, `npm run tsworker -- start …` or `npx tsworker start …`
 * stopped by a process manager would leave the worker orphaned, keeping its port and never
 * draining. Its parent changes then (to init or a subreaper), which a cheap `getppid` sees. Outside
 * npm the parent's exit means nothing (a launcher may start the worker in the background and
 * leave), so nothing is watched.
 */
export function onParentExit(
  onExit: (parentPid: number) => void,
  env: NodeJS.ProcessEnv = process.env,
): () => void {
  if (!env['npm_lifecycle_event']) return () => undefined;
  const timer = setInterval(() => {
    if (process.ppid === STARTED_BY) return;
    clearInterval(timer);
    onExit(STARTED_BY);
  }, PARENT_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * SIGTERM or SIGINT drains the worker gracefully (lib/server/shutdown.ts) and exits 0; so does the
 * exit of the npm or npx that started it (see `onParentExit`). A second signal exits at once with
 * 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), the shell's convention for "killed
 * by a signal".
 */
export function drainOnSignals(
  running: RunningWorker,
  logger: Logger,
  options: SignalOptions = {},
): void {
  const log = logger.child({ component: 'shutdown' });
  let draining = false;
  const drain = (): void => {
    draining = true;
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
  const onSignal = (signal: NodeJS.Signals): void => {
    if (draining) {
      const exitCode = 128 + (constants.signals[signal] ?? 0);
      log.warn({ signal, exitCode }, `second signal: exiting at once with code ${exitCode}`);
      process.exit(exitCode);
    }
    log.info({ signal }, 'signal received: draining (send it again to exit at once)');
    drain();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (options.pending !== undefined) onSignal(options.pending);
  onParentExit((parentPid) => {
    // A Ctrl-C reaches both the worker and npm's shell: the drain it started goes on.
    if (draining) return;
    log.info({ parentPid }, 'the npm or npx that started the worker has exited: draining');
    drain();
  });
}
