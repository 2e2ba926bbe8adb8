/**
 * Graceful drain (SIGTERM/SIGINT), the way Knative's queue-proxy and Sprocket do it:
 *
 * 1. stop admitting: readiness turns 503 at once, new requests and session creates get 503 with
 *    Retry-After (the listeners stay open meanwhile, so a late client gets that answer, retryable
 *    by the vastai client, instead of a refused connection), and the autoscaler is told at once;
 * 2. let in-flight and queued requests finish, streams included, within the grace period;
 * 3. abort what is left: each such request is counted as cancelled and, if its headers are not
 *    out yet, answered 503 saying the worker shut down;
 * 4. stop listening, close the open sessions (their on_close callbacks run), flush the final
 *    /worker_status/ and /delete_requests/, run the worker's shutdown hook and lifecycle stop,
 *    and close everything.
 */
import { shutDownBeforeFinishing } from '../errors.ts';
import { settlesWithin } from '../internal/timers.ts';
import type { Logger } from '../log.ts';
import type { Reporter } from '../metrics/reporter.ts';
import type { InFlightRequests } from '../pipeline/in-flight.ts';
import type { ReadinessState } from '../readiness/state.ts';
import type { SessionManager } from '../sessions/manager.ts';
import type { ResolvedWorker } from '../worker.ts';

/** What a drain needs from a running worker. */
export interface Drainable {
  readonly logger: Logger;
  readonly readiness: ReadinessState;
  readonly inFlight: InFlightRequests;
  readonly sessions: SessionManager;
  readonly reporter: Reporter | undefined;
  /** The worker's own shutdown hook and lifecycle stop run last. */
  readonly worker: Pick<ResolvedWorker, 'shutdown' | 'lifecycle'>;
  /** Stop accepting connections; requests in progress finish. */
  stopAccepting(): void;
  /** Close listeners, connections and timers. */
  close(): Promise<void>;
}

export interface DrainOptions {
  /** How long in-flight and queued requests get to finish (`TERMINATION_GRACE_PERIOD_SECONDS`). */
  gracePeriodMs: number;
  /** After the grace period, how long aborted requests get to unwind before connections are cut. @default 5000 */
  abortWaitMs?: number;
}

export interface DrainOutcome {
  /** Requests in flight when the drain began that finished on their own. */
  readonly completed: number;
  /** Requests aborted when the grace period ran out. */
  readonly aborted: number;
  readonly sessionsClosed: number;
  readonly durationMs: number;
}

const drains = new WeakMap<Drainable, Promise<DrainOutcome>>();

/** Drains a running worker; calling it again returns the same drain. */
export function drain(running: Drainable, options: DrainOptions): Promise<DrainOutcome> {
  let pending = drains.get(running);
  if (pending === undefined) {
    pending = runDrain(running, options);
    drains.set(running, pending);
  }
  return pending;
}

async function runDrain(running: Drainable, options: DrainOptions): Promise<DrainOutcome> {
  const log = running.logger.child({ component: 'shutdown' });
  const startedAt = performance.now();
  const inFlightAtStart = running.inFlight.size;

  running.readiness.startDraining();
  // The reporter also reports on readiness changes; asking twice costs nothing and keeps this step explicit.
  running.reporter?.requestReport();
  log.info(
    { inFlight: inFlightAtStart, gracePeriodMs: options.gracePeriodMs },
    'draining: refusing new work, waiting for requests in flight',
  );

  let aborted = 0;
  if (!(await settlesWithin(running.inFlight.whenIdle(), options.gracePeriodMs))) {
    aborted = running.inFlight.abortAll(shutDownBeforeFinishing());
    log.warn({ aborted }, 'grace period over: aborting the requests left, counted as cancelled');
    if (!(await settlesWithin(running.inFlight.whenIdle(), options.abortWaitMs ?? 5_000))) {
      log.error(
        { left: running.inFlight.size },
        'requests still running after abort; closing their connections',
      );
    }
  }

  running.stopAccepting();
  const sessionsClosed = running.sessions.closeAll('shutdown');
  await running.sessions.settleCallbacks();
  await step(log, 'final report', () => running.reporter?.flush());
  await step(log, 'worker shutdown hook', () => running.worker.shutdown?.());
  await step(log, 'lifecycle stop', () => running.worker.lifecycle?.stop?.());
  await running.close();

  const outcome: DrainOutcome = {
    completed: Math.max(0, inFlightAtStart - aborted),
    aborted,
    sessionsClosed,
    durationMs: Math.round(performance.now() - startedAt),
  };
  log.info(outcome, 'drained');
  return outcome;
}

/** A failing shutdown step is logged; the steps after it still run. */
async function step(log: Logger, name: string, run: () => unknown): Promise<void> {
  try {
    await run();
  } catch (error) {
    log.error({ err: error, step: name }, 'shutdown step failed');
  }
}
