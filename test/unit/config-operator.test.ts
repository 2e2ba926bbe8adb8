import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  ENVIRONMENT_VARIABLE_DOCS,
  ENVIRONMENT_VARIABLES,
  loadConfig,
  tsworkerVersion,
} from '../../lib/config.ts';
import { readFileSync } from 'node:fs';

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

describe('LOG_LEVEL', () => {
  it('takes any case, as PyWorker users write it', () => {
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: 'DEBUG' }).logLevel).toBe('debug');
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: 'Info' }).logLevel).toBe('info');
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: 'SILENT' }).logLevel).toBe('silent');
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: ' error ' }).logLevel).toBe('error');
  });

  it("takes Python's WARNING and CRITICAL for warn and fatal", () => {
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: 'WARNING' }).logLevel).toBe('warn');
    expect(loadConfig({ ...LOCAL, LOG_LEVEL: 'critical' }).logLevel).toBe('fatal');
  });

  it('names the levels and echoes a bad one', () => {
    expect(problemsOf({ ...LOCAL, LOG_LEVEL: 'LOUD' })).toEqual([
      'LOG_LEVEL: must be one of trace, debug, info, warn, error, fatal, silent (any case), got "LOUD"',
    ]);
  });
});

describe('a bad value', () => {
  const BAD = 'bad-value!';

  it('is echoed in the error of every variable that checks its value', () => {
    const freeText: string[] = [];
    for (const name of ENVIRONMENT_VARIABLES) {
      const problems = problemsOf({ ...LOCAL, [name]: BAD });
      if (problems.length === 0) {
        freeText.push(name);
        continue;
      }
      const own = problems.filter((p) => p.startsWith(`${name}: `));
      expect(own, `${name}: ${problems.join('; ')}`).toHaveLength(1);
      expect(own[0], name).toContain(`"${BAD}"`);
    }
    // Only paths, addresses, names and tokens take any text: every other variable was checked above.
    expect(freeText.sort()).toEqual(
      [
        'BENCHMARK_CACHE',
        'FORCE_UPDATE_FILE',
        'MASTER_TOKEN',
        'METRICS_TOKEN',
        'MODEL_LOG',
        'PUBLIC_IPADDR',
        'SSL_CERT_FILE',
        'SSL_KEY_FILE',
        'WORKER_HOST',
      ].sort(),
    );
  });

  it('is echoed for numbers out of range, and for VAST_TCP_PORT_<WORKER_PORT>', () => {
    expect(problemsOf({ ...LOCAL, WORKER_PORT: 'abc' })).toEqual([
      'WORKER_PORT: must be a port number (0-65535), got "abc"',
    ]);
    expect(problemsOf({ ...LOCAL, WORKER_HTTP_PORT: '70000' })).toEqual([
      'WORKER_HTTP_PORT: must be a port number (0-65535), got "70000"',
    ]);
    expect(problemsOf({ ...LOCAL, MAX_CONNECTIONS: '0' })).toEqual([
      'MAX_CONNECTIONS: must be a positive whole number, got "0"',
    ]);
    expect(problemsOf({ ...LOCAL, TERMINATION_GRACE_PERIOD_SECONDS: '-1' })).toEqual([
      'TERMINATION_GRACE_PERIOD_SECONDS: must be a number of seconds (0 or more), got "-1"',
    ]);
    expect(problemsOf({ ...LOCAL, AUTH_MODE: 'Legacy2' })).toEqual([
      'AUTH_MODE: must be "current" or "legacy", got "Legacy2"',
    ]);
    expect(problemsOf({ ...LOCAL, WORKER_PORT: '7000', VAST_TCP_PORT_7000: 'x' })).toEqual([
      'VAST_TCP_PORT_7000: must be a port number (0-65535), got "x"',
    ]);
  });

  it('is cut when it is long', () => {
    const [problem] = problemsOf({ ...LOCAL, WORKER_PORT: '9'.repeat(500) });
    expect(problem).toBe(
      `WORKER_PORT: must be a port number (0-65535), got "${'9'.repeat(77)}..."`,
    );
  });

  it('fits one line when it is the only problem, and is listed one a line with others', () => {
    expect(() => loadConfig({ ...LOCAL, WORKER_PORT: 'abc' })).toThrow(
      new ConfigError(['WORKER_PORT: must be a port number (0-65535), got "abc"']),
    );
    const single = new ConfigError(['A: x']);
    expect(single.message).toBe('invalid configuration: A: x');
    expect(new ConfigError(['A: x', 'B: y']).message).toBe(
      'invalid configuration:\n  - A: x\n  - B: y',
    );
  });
});

describe('the variables', () => {
  it('each have a one-line meaning for tsworker start --help', () => {
    expect(Object.keys(ENVIRONMENT_VARIABLE_DOCS).sort()).toEqual(
      [...ENVIRONMENT_VARIABLES].sort(),
    );
    for (const [name, meaning] of Object.entries(ENVIRONMENT_VARIABLE_DOCS)) {
      expect(meaning, name).not.toBe('');
      expect(meaning, name).not.toContain('\n');
    }
  });

  it('include METRICS_TOKEN, unset by default', () => {
    expect(loadConfig(LOCAL).metricsToken).toBeUndefined();
    expect(loadConfig({ ...LOCAL, METRICS_TOKEN: 'tok' }).metricsToken).toBe('tok');
  });
});

describe('tsworkerVersion', () => {
  it("is package.json's version", () => {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(tsworkerVersion()).toBe(pkg.version);
  });
});
