import { describe, expect, it } from 'vitest';
import { ReadinessState, type ReadinessSnapshot } from '../../../lib/readiness/state.ts';

function readyState(): ReadinessState {
  const state = new ReadinessState();
  state.modelLoaded();
  state.benchmarking();
  state.ready(42);
  return state;
}

describe('ReadinessState errors', () => {
  it('clears a healthcheck error: back to ready, with an empty message and maxPerf kept', () => {
    const state = readyState();
    const changes: ReadinessSnapshot[] = [];
    state.onChange((next) => changes.push(next));
    state.errored('Healthcheck failed with status: 503', 'healthcheck');
    expect(state.errorSource).toBe('healthcheck');
    expect(state.clearHealthcheckError()).toBe(true);
    expect(state.phase).toBe('ready');
    expect(state.isReady).toBe(true);
    expect(state.errorMessage).toBe('');
    expect(state.errorSource).toBeUndefined();
    expect(state.maxPerf).toBe(42);
    expect(changes.map((c) => [c.phase, c.errorMessage])).toEqual([
      ['errored', 'Healthcheck failed with status: 503'],
      ['ready', ''],
    ]);
  });

  it('keeps every other error: errors are sticky by default', () => {
    const state = readyState();
    state.errored('Exception: corrupted model file: boom');
    expect(state.errorSource).toBe('fatal');
    expect(state.clearHealthcheckError()).toBe(false);
    expect(state.phase).toBe('errored');
    expect(state.errorMessage).toBe('Exception: corrupted model file: boom');
  });

  it('lets a fatal error replace a healthcheck error, which then cannot be cleared', () => {
    const state = readyState();
    state.errored('Healthcheck failed with status: 503', 'healthcheck');
    state.errored('Exception: corrupted model file: boom');
    expect(state.errorMessage).toBe('Exception: corrupted model file: boom');
    expect(state.clearHealthcheckError()).toBe(false);
    expect(state.phase).toBe('errored');
    expect(state.errorCount).toBe(2);
  });

  it('keeps the first fatal error when a healthcheck error follows it', () => {
    const state = readyState();
    state.errored('Exception: corrupted model file: boom');
    state.errored('Healthcheck failed with status: 503', 'healthcheck');
    expect(state.errorMessage).toBe('Exception: corrupted model file: boom');
    expect(state.errorSource).toBe('fatal');
  });

  it('does nothing when there is no error to clear', () => {
    const state = readyState();
    expect(state.clearHealthcheckError()).toBe(false);
    expect(state.phase).toBe('ready');
  });
});
