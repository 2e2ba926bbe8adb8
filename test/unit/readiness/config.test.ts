import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../lib/config.ts';

const LOCAL = { UNSECURED: 'true' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('readiness configuration', () => {
  it('defaults to log readiness, 3 healthcheck failures, a 300 s timeout, a 60 s grace and a line a minute', () => {
    const config = loadConfig(LOCAL);
    expect(config.readiness).toBe('logs');
    expect(config.healthcheckFailures).toBe(3);
    expect(config.timings.readinessTimeout).toBe(300);
    expect(config.timings.readinessGrace).toBe(60);
    expect(config.timings.readinessLogInterval).toBe(60);
    expect(config.timings.healthcheckTimeout).toBe(10);
  });

  it('reads READINESS, taking the reference spelling "healthcheck" for health', () => {
    for (const mode of ['logs', 'health', 'both'] as const)
      expect(loadConfig({ ...LOCAL, READINESS: mode }).readiness).toBe(mode);
    expect(loadConfig({ ...LOCAL, READINESS: 'healthcheck' }).readiness).toBe('health');
  });

  it('lists a bad READINESS, echoing it, with every other problem', () => {
    const problems = problemsOf({
      ...LOCAL,
      READINESS: 'heath',
      HEALTHCHECK_FAILURES: '0',
      READINESS_GRACE_SECONDS: '-1',
      WORKER_PORT: 'abc',
    });
    expect(problems).toContain('READINESS: must be "logs", "health" or "both", got "heath"');
    expect(problems).toContain('HEALTHCHECK_FAILURES: must be a whole number, 1 or more, got "0"');
    expect(problems).toContain(
      'READINESS_GRACE_SECONDS: must be a number of seconds (0 or more), got "-1"',
    );
    expect(problems.some((p) => p.startsWith('WORKER_PORT'))).toBe(true);
  });

  it('rejects a fractional HEALTHCHECK_FAILURES and a zero READINESS_TIMEOUT', () => {
    const problems = problemsOf({ ...LOCAL, HEALTHCHECK_FAILURES: '2.5', READINESS_TIMEOUT: '0' });
    expect(problems.some((p) => p.startsWith('HEALTHCHECK_FAILURES'))).toBe(true);
    expect(problems.some((p) => p.startsWith('READINESS_TIMEOUT'))).toBe(true);
  });

  it('takes HEALTHCHECK_PROBE_TIMEOUT, the newest reference name, unless HEALTHCHECK_TIMEOUT_SECONDS is set', () => {
    expect(
      loadConfig({ ...LOCAL, HEALTHCHECK_PROBE_TIMEOUT: '25' }).timings.healthcheckTimeout,
    ).toBe(25);
    expect(
      loadConfig({ ...LOCAL, HEALTHCHECK_PROBE_TIMEOUT: '25', HEALTHCHECK_TIMEOUT_SECONDS: '4' })
        .timings.healthcheckTimeout,
    ).toBe(4);
  });

  it('allows a zero grace period: probe the healthcheck at once', () => {
    expect(loadConfig({ ...LOCAL, READINESS_GRACE_SECONDS: '0' }).timings.readinessGrace).toBe(0);
  });
});
