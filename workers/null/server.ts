import { setTimeout as delay } from 'node:timers/promises';
import {
  defineHandler,
  defineWorkerFactory,
  EnvProblems,
  z,
  type HandlerContext,
  type WorkerEnv,
  type WorkerOptions,
} from '../../lib/index.ts';
import {
  BENCHMARK_SENTINEL,
  DEFAULT_MAX_RESERVATION_SECONDS,
  LONGEST_RESERVATION_SECONDS,
  ReserveInput,
  type BenchmarkResult,
  type ReserveResult,
} from './data_types.ts';

const maxReservation = z.coerce
  .number({ error: 'must be a number of seconds' })
  .positive('must be a positive number of seconds')
  .max(LONGEST_RESERVATION_SECONDS, `must be at most ${LONGEST_RESERVATION_SECONDS} seconds`);

/** `MAX_RESERVATION_SECONDS`, validated (a bad value stops start-up); empty counts as unset. */
export function readMaxReservationSeconds(env: WorkerEnv, problems: EnvProblems): number {
  return problems.read(
    env,
    'MAX_RESERVATION_SECONDS',
    maxReservation,
    DEFAULT_MAX_RESERVATION_SECONDS,
  );
}

/**
 * The reference's `reserve_worker`: holds the worker's FIFO slot for `duration` seconds (capped),
 * and gives it back early when the client leaves: the pipeline aborts `signal`, the timer rejects
 * and the request counts as cancelled.
 */
export function reserveFor(maxSeconds: number) {
  return async (
    payload: ReserveInput,
    { signal }: HandlerContext,
  ): Promise<ReserveResult | BenchmarkResult> => {
    if (payload[BENCHMARK_SENTINEL] === true) return { ok: true, benchmark: true };
    const requested = payload.duration ?? null;
    const duration = Math.min(requested ?? maxSeconds, maxSeconds);
    const startedAt = performance.now();
    await delay(duration * 1000, undefined, { signal });
    return {
      released: 'duration_elapsed',
      requested,
      duration,
      capped: requested !== null && requested > maxSeconds,
      held_seconds: Math.round(performance.now() - startedAt) / 1000,
    };
  };
}

/** The null worker's definition for an environment. Throws ConfigError on a bad variable. */
export function nullWorkerOptions(env: WorkerEnv): WorkerOptions {
  const problems = new EnvProblems();
  const maxSeconds = readMaxReservationSeconds(env, problems);
  problems.throwIfAny();
  const reserve = defineHandler({
    route: '/reserve',
    payload: ReserveInput,
    predict: reserveFor(maxSeconds),
    // One reservation at a time: the FIFO is what "holding the worker" means.
    allowParallel: false,
    maxQueueTime: 30,
    workload: () => 100,
    // The sentinel makes the one benchmark request return at once.
    benchmark: {
      generator: () => ({ [BENCHMARK_SENTINEL]: true }),
      runs: 1,
      concurrency: 1,
      warmup: false,
    },
  });
  return {
    name: 'null',
    // No model server; the definition still needs a valid URL (the reference uses port 1).
    modelServerUrl: 'http://127.0.0.1:1',
    handlers: [reserve],
    // Ready at once: no model log to watch, no healthcheck.
    lifecycle: { start: () => Promise.resolve() },
  };
}

export default defineWorkerFactory('null', nullWorkerOptions);
