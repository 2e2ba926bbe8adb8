import { describe, expect, it } from 'vitest';
import {
  arrivalOffsets,
  arrivalSchedule,
  seededRandom,
  userStartOffsets,
} from '../../../lib/test-harness/arrivals.ts';

/** A random source that replays fixed numbers, so every gap is known. */
function replay(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length] as number;
}

describe('uniform arrivals', () => {
  it('space requests evenly at 1/rate, the first at 0', () => {
    expect(arrivalSchedule({ rate: 4, kind: 'uniform' }, 4)).toEqual([0, 250, 500, 750]);
  });

  it('follow the square-root curve of a linear ramp, then the full rate', () => {
    // rate 2/s, ramp 2 s: Λ(t) = t²/2 during the ramp (2 requests), then 2 + 2(t − 2).
    const offsets = arrivalSchedule({ rate: 2, kind: 'uniform', rampSeconds: 2 }, 5);
    expect(offsets[0]).toBe(0);
    expect(offsets[1]).toBeCloseTo(Math.SQRT2 * 1000);
    expect(offsets[2]).toBeCloseTo(2000);
    expect(offsets[3]).toBeCloseTo(2500);
    expect(offsets[4]).toBeCloseTo(3000);
  });
});

describe('Poisson arrivals', () => {
  it('add exponential gaps -ln(1-u)/rate drawn from the injected random source', () => {
    const offsets = arrivalSchedule({ rate: 10, kind: 'poisson', random: replay(0.5, 0.9, 0) }, 4);
    const gap = (u: number) => (-Math.log(1 - u) / 10) * 1000;
    expect(offsets[0]).toBe(0);
    expect(offsets[1]).toBeCloseTo(gap(0.5));
    expect(offsets[2]).toBeCloseTo(gap(0.5) + gap(0.9));
    expect(offsets[3]).toBeCloseTo(gap(0.5) + gap(0.9) + gap(0));
  });

  it('are the same schedule for the same seed', () => {
    const a = arrivalSchedule({ rate: 50, kind: 'poisson', random: seededRandom(42) }, 100);
    const b = arrivalSchedule({ rate: 50, kind: 'poisson', random: seededRandom(42) }, 100);
    expect(a).toEqual(b);
  });

  it('average the requested rate over many arrivals', () => {
    const n = 20_000;
    const offsets = arrivalSchedule({ rate: 100, kind: 'poisson', random: seededRandom(7) }, n);
    const rate = ((n - 1) * 1000) / (offsets[n - 1] as number);
    expect(rate).toBeGreaterThan(97);
    expect(rate).toBeLessThan(103);
  });

  it('never go back in time', () => {
    const offsets = arrivalSchedule(
      { rate: 5, kind: 'poisson', rampSeconds: 3, random: seededRandom(1) },
      500,
    );
    for (let i = 1; i < offsets.length; i++) {
      expect(offsets[i]).toBeGreaterThanOrEqual(offsets[i - 1] as number);
    }
  });

  it('come at a lower rate during a ramp than after it', () => {
    const offsets = arrivalSchedule(
      { rate: 100, kind: 'poisson', rampSeconds: 10, random: seededRandom(3) },
      3000,
    );
    const inRamp = offsets.filter((t) => t < 5000).length;
    const afterRamp = offsets.filter((t) => t >= 10_000 && t < 15_000).length;
    // ∫ of the ramp over 0..5 s is 125 requests; a full-rate 5 s is 500.
    expect(inRamp).toBeLessThan(afterRamp / 2);
  });
});

describe('arrival options', () => {
  it('reject a rate that is not positive', () => {
    expect(() => arrivalOffsets({ rate: 0, kind: 'uniform' }).next()).toThrow(RangeError);
    expect(() => arrivalOffsets({ rate: -1, kind: 'poisson' }).next()).toThrow(RangeError);
  });
});

describe('seededRandom', () => {
  it('stays within [0, 1)', () => {
    const random = seededRandom(123);
    for (let i = 0; i < 10_000; i++) {
      const u = random();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});

describe('closed-loop user starts', () => {
  it('start every user at once without a ramp', () => {
    expect(userStartOffsets(3)).toEqual([0, 0, 0]);
  });

  it('spread users evenly over the ramp', () => {
    expect(userStartOffsets(4, 2)).toEqual([0, 500, 1000, 1500]);
  });

  it('need at least one user', () => {
    expect(() => userStartOffsets(0)).toThrow(RangeError);
  });
});
