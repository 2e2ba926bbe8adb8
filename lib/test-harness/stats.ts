/**
 * Latency statistics. Percentiles interpolate linearly between the two nearest ranks (numpy's
 * default, "type 7"), so p50 of [1, 2] is 1.5 and every percentile of one sample is that sample.
 */

export interface Distribution {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** The p-th percentile (0..100) of values sorted ascending; undefined for no values. */
export function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  const n = sorted.length;
  if (n === 0) return undefined;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const low = sorted[lo] as number;
  const high = sorted[hi] as number;
  return low + (high - low) * (rank - lo);
}

/** Sorts a copy (numerically: a Float64Array sorts by value, not as strings) and summarises it. */
export function distribution(values: readonly number[] | Float64Array): Distribution | undefined {
  if (values.length === 0) return undefined;
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count: sorted.length,
    min: sorted[0] as number,
    mean: sum / sorted.length,
    p50: percentile(sorted, 50) as number,
    p90: percentile(sorted, 90) as number,
    p99: percentile(sorted, 99) as number,
    max: sorted[sorted.length - 1] as number,
  };
}

/**
 * The last `capacity` values, for the live view: percentiles of recent requests without sorting
 * the whole run every second.
 */
export class RecentWindow {
  readonly #values: Float64Array;
  #next = 0;
  #size = 0;

  constructor(capacity = 2048) {
    this.#values = new Float64Array(capacity);
  }

  push(value: number): void {
    this.#values[this.#next] = value;
    this.#next = (this.#next + 1) % this.#values.length;
    if (this.#size < this.#values.length) this.#size++;
  }

  distribution(): Distribution | undefined {
    return distribution(this.#values.subarray(0, this.#size));
  }
}
