import { describe, expect, it } from 'vitest';
import { distribution, percentile, RecentWindow } from '../../../lib/test-harness/stats.ts';

describe('percentile', () => {
  it('interpolates linearly between the two nearest ranks', () => {
    expect(percentile([1, 2], 50)).toBe(1.5);
    expect(percentile([10, 20, 30, 40, 50], 90)).toBeCloseTo(46);
    expect(percentile([10, 20, 30, 40, 50], 25)).toBe(20);
  });

  it('gives the minimum at p0 and the maximum at p100', () => {
    const values = [3, 5, 8, 13];
    expect(percentile(values, 0)).toBe(3);
    expect(percentile(values, 100)).toBe(13);
  });

  it('returns the only sample for every percentile of one sample', () => {
    for (const p of [0, 50, 99, 100]) expect(percentile([7], p)).toBe(7);
  });

  it('has no percentile of no values', () => {
    expect(percentile([], 50)).toBeUndefined();
  });

  it('rejects a percentile outside 0..100', () => {
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });

  it('gives p99 of 1..100 as 99.01, the type-7 definition', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 99)).toBeCloseTo(99.01);
    expect(percentile(values, 50)).toBeCloseTo(50.5);
  });
});

describe('distribution', () => {
  it('sorts numerically, not as strings', () => {
    const d = distribution([100, 9, 10]);
    expect(d).toMatchObject({ count: 3, min: 9, p50: 10, max: 100 });
  });

  it('reports the mean next to the percentiles', () => {
    expect(distribution([1, 2, 3, 4])?.mean).toBe(2.5);
  });

  it('is undefined for no values', () => {
    expect(distribution([])).toBeUndefined();
  });

  it('leaves its input in its order', () => {
    const values = [3, 1, 2];
    distribution(values);
    expect(values).toEqual([3, 1, 2]);
  });
});

describe('RecentWindow', () => {
  it('summarises only the latest values once full', () => {
    const window = new RecentWindow(3);
    for (const value of [1000, 1, 2, 3]) window.push(value);
    expect(window.distribution()).toMatchObject({ count: 3, min: 1, max: 3 });
  });

  it('summarises what it has before it is full', () => {
    const window = new RecentWindow(10);
    window.push(5);
    window.push(7);
    expect(window.distribution()).toMatchObject({ count: 2, p50: 6 });
  });
});
