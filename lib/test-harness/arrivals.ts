/**
 * When requests start. Open loop: arrival times at a rate, Poisson (exponential gaps, like
 * independent users) or uniform (evenly spaced). An optional ramp raises the rate linearly from 0
 * to the target over `rampSeconds`, by time-rescaling a unit-rate process through the cumulative
 * rate, so a Poisson ramp is still a (non-homogeneous) Poisson process. Closed loop: users start
 * evenly over the ramp.
 */

/** A source of uniform numbers in [0, 1); injected so schedules are reproducible in tests. */
export type Random = () => number;

export type ArrivalKind = 'poisson' | 'uniform';

export interface ArrivalOptions {
  /** Requests per second once ramped up; must be > 0. */
  readonly rate: number;
  readonly kind: ArrivalKind;
  /** Seconds over which the rate rises linearly from 0. @default 0 */
  readonly rampSeconds?: number;
  /** @default Math.random */
  readonly random?: Random;
}

/** mulberry32: a small, fast, seedable generator; plenty for spacing requests. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An exponential variate with mean 1. `1 - u` keeps the log finite, as u may be 0. */
function unitExponential(random: Random): number {
  return -Math.log(1 - random());
}

/**
 * Milliseconds after the start at which the request with cumulative "work" `units` arrives: the
 * inverse of Λ(t) = rate·t²/(2R) during the ramp R, and rate·R/2 + rate·(t − R) after it.
 */
function inverseCumulativeRate(units: number, rate: number, rampSeconds: number): number {
  if (rampSeconds <= 0) return (units / rate) * 1000;
  const rampUnits = (rate * rampSeconds) / 2;
  const seconds =
    units <= rampUnits
      ? Math.sqrt((2 * rampSeconds * units) / rate)
      : rampSeconds + (units - rampUnits) / rate;
  return seconds * 1000;
}

/**
 * Arrival offsets in milliseconds, nondecreasing, the first at 0. Lazy, so a run of a million
 * requests does not build its schedule up front.
 */
export function* arrivalOffsets(options: ArrivalOptions): Generator<number, never, void> {
  const { rate, kind } = options;
  const rampSeconds = options.rampSeconds ?? 0;
  const random = options.random ?? Math.random;
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`rate must be > 0, got ${rate}`);
  if (!(rampSeconds >= 0)) throw new RangeError(`ramp must be >= 0 seconds, got ${rampSeconds}`);
  let units = 0;
  for (;;) {
    yield inverseCumulativeRate(units, rate, rampSeconds);
    units += kind === 'poisson' ? unitExponential(random) : 1;
  }
}

/** The first `count` offsets of `arrivalOffsets`. */
export function arrivalSchedule(options: ArrivalOptions, count: number): number[] {
  const offsets: number[] = [];
  const source = arrivalOffsets(options);
  for (let i = 0; i < count; i++) offsets.push(source.next().value);
  return offsets;
}

/** Closed loop: when each of `users` starts, in milliseconds: evenly over the ramp, or all at 0. */
export function userStartOffsets(users: number, rampSeconds = 0): number[] {
  if (!Number.isInteger(users) || users < 1)
    throw new RangeError(`users must be >= 1, got ${users}`);
  return Array.from({ length: users }, (_, k) =>
    rampSeconds > 0 ? (k * rampSeconds * 1000) / users : 0,
  );
}
