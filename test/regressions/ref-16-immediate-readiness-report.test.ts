// Protocol reference §12.16: load and error did not set update_pending, so the autoscaler learnt of them up to 10 s late.
import { describe, expect, it } from 'vitest';
import { startStack } from '../helpers/stack.ts';

describe('ref-16: readiness changes reach the autoscaler at once', () => {
  it('reports "loaded" without waiting for the idle cadence', async () => {
    // An idle cadence far longer than the test: only an immediate report can carry loadtime in time.
    const stack = await startStack({
      env: { REPORT_IDLE_SECONDS: '3600', REPORT_TICK_SECONDS: '3600' },
    });
    try {
      const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
      expect(report.max_perf).toBeGreaterThan(0);
      stack.worker.readiness.errored('Exception: corrupted model file');
      const errored = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
      expect(errored.error_msg).toBe('Exception: corrupted model file');
    } finally {
      await stack.close();
    }
  });
});
