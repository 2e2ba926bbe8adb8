import { apiPayload, z } from '../../lib/index.ts';

/**
 * The key the benchmark sets so the reservation returns at once instead of holding the worker
 * (the reference's `BENCHMARK_SENTINEL`, model-servers.md §9).
 */
export const BENCHMARK_SENTINEL = '__null_worker_benchmark__';

/** Default of `MAX_RESERVATION_SECONDS`, as in the reference. */
export const DEFAULT_MAX_RESERVATION_SECONDS = 3600;

/** The longest hold one timer can wait: Node's setTimeout fires at once above 2^31-1 ms. */
export const LONGEST_RESERVATION_SECONDS = 2_147_483;

/**
 * `/reserve`'s payload, bare or wrapped as `{"input": {...}}`. `duration` is optional: absent, the
 * reservation lasts the cap, as the reference's does. Unknown fields are accepted and ignored.
 */
export const ReserveInput = apiPayload({
  /** Seconds to hold the worker; capped by `MAX_RESERVATION_SECONDS`. */
  duration: z.number().positive('must be a positive number of seconds').optional(),
  [BENCHMARK_SENTINEL]: z.boolean().optional(),
});
export type ReserveInput = z.infer<typeof ReserveInput>;

/** What `/reserve` answers inside `{"result": ...}` once the hold is over. */
export interface ReserveResult {
  readonly released: 'duration_elapsed';
  /** The duration the client asked for; null when it sent none. */
  readonly requested: number | null;
  /** Seconds the worker was held for: `requested` capped by `MAX_RESERVATION_SECONDS`. */
  readonly duration: number;
  readonly capped: boolean;
  /** Seconds measured from the start of the hold to its end. */
  readonly held_seconds: number;
}

/** What the benchmark's sentinel request answers. */
export interface BenchmarkResult {
  readonly ok: true;
  readonly benchmark: true;
}
