import { describe, expect, it } from 'vitest';
import { InFlightRequests } from '../../../lib/pipeline/in-flight.ts';

describe('InFlightRequests', () => {
  it('is idle at once when empty', async () => {
    await expect(new InFlightRequests().whenIdle()).resolves.toBeUndefined();
  });

  it('resolves whenIdle only once the last request is removed', async () => {
    const registry = new InFlightRequests();
    const [a, b] = [new AbortController(), new AbortController()];
    registry.add(a);
    registry.add(b);
    let idle = false;
    const waiting = registry.whenIdle().then(() => (idle = true));
    registry.delete(a);
    await Promise.resolve();
    expect(idle).toBe(false);
    registry.delete(b);
    await waiting;
    expect(registry.size).toBe(0);
  });

  it('aborts every request with the given reason and says how many', () => {
    const registry = new InFlightRequests();
    const controllers = [new AbortController(), new AbortController()];
    for (const controller of controllers) registry.add(controller);
    const reason = new Error('shutting down');
    expect(registry.abortAll(reason)).toBe(2);
    for (const controller of controllers) expect(controller.signal.reason).toBe(reason);
  });
});
