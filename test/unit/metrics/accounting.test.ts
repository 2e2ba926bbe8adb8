import { describe, expect, it } from 'vitest';
import { RequestLifecycle, type LifecycleEvent } from '../../../lib/lifecycle/channel.ts';
import { Accounting } from '../../../lib/metrics/accounting.ts';

function setup(maxPendingDeletes?: number) {
  const lifecycle = new RequestLifecycle({ now: () => 1_000_000 });
  const accounting = new Accounting(
    lifecycle,
    maxPendingDeletes === undefined ? {} : { maxPendingDeletes },
  );
  /** One request through admission to success. */
  const serve = (workload: number, requestIdx = 1) => {
    const record = lifecycle.create({ route: '/r', requestIdx, reqnum: requestIdx, workload });
    lifecycle.admitted(record);
    lifecycle.workStarted(record);
    lifecycle.succeeded(record);
    lifecycle.ended(record);
    return record;
  };
  return { lifecycle, accounting, serve };
}

describe('Accounting, a listener of the lifecycle channel', () => {
  it('counts what the channel publishes, and nothing else', () => {
    const { lifecycle, accounting, serve } = setup();
    const running = lifecycle.create({ route: '/r', requestIdx: 7, reqnum: 7, workload: 30 });
    lifecycle.admitted(running);
    serve(50, 8);
    const snapshot = accounting.snapshot();
    expect(snapshot.interval).toEqual({
      served: 50,
      received: 80,
      cancelled: 0,
      errored: 0,
      rejected: 0,
    });
    expect(snapshot).toMatchObject({ currentLoad: 30, working: 1, workingRequestIdxs: [7] });
    expect(accounting.queuedWorkload).toBe(30);
    expect(accounting.hasUnreported).toBe(true);
  });

  it('commitReported subtracts what was reported: work finished meanwhile is still reported next', () => {
    const { accounting, serve } = setup();
    serve(50);
    const sent = accounting.snapshot();
    serve(20, 2);
    accounting.commitReported(sent);
    expect(accounting.snapshot().interval.served).toBe(20);
    expect(accounting.hasUnreported).toBe(true);
    accounting.commitReported(accounting.snapshot());
    expect(accounting.hasUnreported).toBe(false);
    expect(accounting.totals.served).toBe(70);
  });

  it('a reset between the snapshot and its commit leaves the counters at zero, never negative', () => {
    const { accounting, serve } = setup();
    serve(50);
    const sent = accounting.snapshot();
    accounting.resetInterval();
    accounting.commitReported(sent);
    expect(accounting.snapshot().interval.served).toBe(0);
  });

  it('returnDeletes puts undelivered records back first and drops the oldest past the cap', () => {
    const { accounting, serve } = setup(3);
    serve(1, 1);
    serve(1, 2);
    const undelivered = accounting.takeDeletes();
    serve(1, 3);
    serve(1, 4);
    expect(accounting.returnDeletes(undelivered)).toBe(1);
    expect(accounting.droppedDeletes).toBe(1);
    expect(accounting.peekDeletes().map((record) => record.requestIdx)).toEqual([2, 3, 4]);
  });
});

describe('the lifecycle channel', () => {
  it('delivers each event to every listener in subscription order, synchronously', () => {
    const lifecycle = new RequestLifecycle();
    const seen: string[] = [];
    lifecycle.subscribe((event) => seen.push(`a ${event.kind}`));
    const stop = lifecycle.subscribe((event: LifecycleEvent) => seen.push(`b ${event.kind}`));
    const record = lifecycle.create({ route: '/r', requestIdx: null, reqnum: null, workload: 1 });
    stop();
    lifecycle.rejected(record, 'unauthorized');
    expect(seen).toEqual(['a created', 'b created', 'a rejected']);
    expect(record.status).toBe('Rejected');
  });
});
