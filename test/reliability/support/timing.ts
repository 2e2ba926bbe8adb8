/** Bounded waiting and small statistics for the harness. */
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

export interface PollOptions {
  readonly timeoutMs: number;
  /** @default 50 */
  readonly intervalMs?: number;
  /** What is awaited, for the error message. */
  readonly label: string;
  /** A probe error for which polling stops at once (otherwise errors are retried). */
  readonly rethrow?: (error: unknown) => boolean;
}

/**
 * Polls `probe` until it returns a value other than `undefined` or `false`; throws after the
 * deadline, naming what was awaited and the last probe error.
 */
export async function poll<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  options: PollOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (options.rethrow?.(error) === true) throw error;
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${String(lastError)})`;
      throw new Error(`${options.label}: not within ${options.timeoutMs} ms${cause}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}

/** Like `poll`, but resolves with `undefined` instead of throwing at the deadline. */
export async function pollOrGiveUp<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  options: Omit<PollOptions, 'label'>,
): Promise<T | undefined> {
  try {
    return await poll(probe, { ...options, label: 'poll' });
  } catch {
    return undefined;
  }
}

/** The q-quantile (0..1) of `values`, nearest rank; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** Least-squares slope of y over x; NaN with fewer than two distinct x. */
export function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) * (x - mx);
  }
  return den === 0 ? Number.NaN : num / den;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once. */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
}

/** Counts occurrences of each key. */
export class Tally {
  readonly #counts = new Map<string, number>();

  add(key: string | number, by = 1): void {
    const k = String(key);
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + by);
  }

  get(key: string | number): number {
    return this.#counts.get(String(key)) ?? 0;
  }

  /** Sum over the keys `accept` says yes to. */
  sum(accept: (key: string) => boolean = () => true): number {
    let total = 0;
    for (const [key, count] of this.#counts) if (accept(key)) total += count;
    return total;
  }

  /** "200:12 422:3" in key order. */
  toString(): string {
    return [...this.#counts.entries()]
      .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
      .map(([key, count]) => `${key}:${count}`)
      .join(' ');
  }
}
