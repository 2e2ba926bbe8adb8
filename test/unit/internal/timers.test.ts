import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  delay,
  runAfter,
  runEvery,
  settlesWithin,
  withTimeout,
} from '../../../lib/internal/timers.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('settlesWithin', () => {
  it('is true when the promise fulfils in time, and clears its timer', async () => {
    await expect(settlesWithin(Promise.resolve('x'), 1000)).resolves.toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('is false once the time has passed', async () => {
    const result = settlesWithin(new Promise(() => undefined), 1000);
    await vi.advanceTimersByTimeAsync(1000);
    await expect(result).resolves.toBe(false);
  });

  it('rejects when the promise rejects first', async () => {
    await expect(settlesWithin(Promise.reject(new Error('boom')), 1000)).rejects.toThrow('boom');
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('delay', () => {
  it('resolves after the time', async () => {
    let done = false;
    void delay(500).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(499);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
  });

  it('resolves at once on abort, and clears its timer', async () => {
    const abort = new AbortController();
    const waited = delay(60_000, abort.signal);
    abort.abort();
    await expect(waited).resolves.toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('resolves at once when already aborted', async () => {
    await expect(delay(60_000, AbortSignal.abort())).resolves.toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('withTimeout', () => {
  it('passes the value through and clears its timer', async () => {
    await expect(withTimeout(Promise.resolve(7), 1000, 'too slow')).resolves.toBe(7);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects with the message once the time has passed', async () => {
    const result = withTimeout(new Promise(() => undefined), 1000, 'too slow');
    const settled = expect(result).rejects.toThrow('too slow');
    await vi.advanceTimersByTimeAsync(1000);
    await settled;
  });

  it('rejects with the reason when the signal aborts', async () => {
    const abort = new AbortController();
    const result = withTimeout(new Promise(() => undefined), 1000, 'too slow', abort.signal);
    abort.abort(new Error('stopped'));
    await expect(result).rejects.toThrow('stopped');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('passes a rejection through', async () => {
    await expect(withTimeout(Promise.reject(new Error('boom')), 1000, 'x')).rejects.toThrow('boom');
  });
});

describe('runAfter and runEvery', () => {
  it('runs once after the time, never after an abort', async () => {
    const abort = new AbortController();
    const once = vi.fn();
    const cancelled = vi.fn();
    runAfter(1000, abort.signal, once);
    runAfter(2000, abort.signal, cancelled);
    await vi.advanceTimersByTimeAsync(1000);
    expect(once).toHaveBeenCalledTimes(1);
    abort.abort();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(5000);
    expect(cancelled).not.toHaveBeenCalled();
  });

  it('repeats until aborted', async () => {
    const abort = new AbortController();
    const tick = vi.fn();
    runEvery(1000, abort.signal, tick);
    await vi.advanceTimersByTimeAsync(3000);
    expect(tick).toHaveBeenCalledTimes(3);
    abort.abort();
    await vi.advanceTimersByTimeAsync(3000);
    expect(tick).toHaveBeenCalledTimes(3);
  });

  it('does nothing when already aborted', () => {
    const action = vi.fn();
    runAfter(1000, AbortSignal.abort(), action);
    runEvery(1000, AbortSignal.abort(), action);
    expect(vi.getTimerCount()).toBe(0);
  });
});
