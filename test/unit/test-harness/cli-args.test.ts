import { describe, expect, it } from 'vitest';
import {
  LOCAL_AUTOSCALER,
  normalizeArgv,
  parseTestLoadArgs,
  PRODUCTION_AUTOSCALER,
  UsageError,
} from '../../../lib/test-harness/cli.ts';

const parseError = (argv: string[]): string => {
  try {
    parseTestLoadArgs(argv);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error(`parsed without error: ${argv.join(' ')}`);
};

describe('test_load flags', () => {
  it("read PyWorker's single-dash -rps and -n the way the original does", () => {
    const options = parseTestLoadArgs([
      '-n',
      '10',
      '-rps',
      '2.5',
      '-k',
      'key',
      '-e',
      'group',
      '-l',
    ]);
    expect(options).toMatchObject({
      count: 10,
      rate: 2.5,
      mode: 'open',
      apiKey: 'key',
      endpoint: 'group',
      autoscalerUrl: LOCAL_AUTOSCALER,
      worker: 'hello_world',
    });
  });

  it('accept --rps and -rps=N as well', () => {
    expect(parseTestLoadArgs(['-n', '1', '--rps', '3', '-k', 'k', '-e', 'e']).rate).toBe(3);
    expect(parseTestLoadArgs(['-n', '1', '-rps=4', '-k', 'k', '-e', 'e']).rate).toBe(4);
    expect(normalizeArgv(['-rps', '2', '-n', '1'])).toEqual(['--rps', '2', '-n', '1']);
  });

  it('route through the production autoscaler unless -l or --autoscaler says otherwise', () => {
    expect(parseTestLoadArgs(['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e']).autoscalerUrl).toBe(
      PRODUCTION_AUTOSCALER,
    );
    expect(
      parseTestLoadArgs([
        '-n',
        '1',
        '-rps',
        '1',
        '-k',
        'k',
        '-e',
        'e',
        '--autoscaler',
        'http://127.0.0.1:9/',
      ]).autoscalerUrl,
    ).toBe('http://127.0.0.1:9');
  });

  it('choose the closed loop when only --concurrency is given', () => {
    const options = parseTestLoadArgs([
      '-n',
      '5',
      '--concurrency',
      '4',
      '--worker-url',
      'http://127.0.0.1:3000',
    ]);
    expect(options).toMatchObject({
      mode: 'closed',
      concurrency: 4,
      workerUrl: 'http://127.0.0.1:3000',
    });
    expect(options.autoscalerUrl).toBeUndefined();
  });

  it('take --max-error-rate as a fraction or a percentage', () => {
    const base = ['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e'];
    expect(parseTestLoadArgs([...base, '--max-error-rate', '0.05']).maxErrorRate).toBe(0.05);
    expect(parseTestLoadArgs([...base, '--max-error-rate', '5%']).maxErrorRate).toBe(0.05);
  });

  it('default to a 600 s request deadline and 3 re-routes, as the Python client', () => {
    const options = parseTestLoadArgs(['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e']);
    expect(options.timeoutMs).toBe(600_000);
    expect(options.retries).toBe(3);
  });

  it('name the problem in one message', () => {
    expect(parseError(['-rps', '1', '-k', 'k', '-e', 'e'])).toBe('-n <requests> is required');
    expect(parseError(['-n', 'ten', '-rps', '1', '-k', 'k', '-e', 'e'])).toBe(
      '-n must be a whole number >= 1, got "ten"',
    );
    expect(parseError(['-n', '1', '-k', 'k', '-e', 'e'])).toMatch(
      /-rps <rate> .* or --concurrency <users>/,
    );
    expect(parseError(['-n', '1', '-rps', '0', '-k', 'k', '-e', 'e'])).toBe(
      '-rps must be a number > 0, got "0"',
    );
    expect(parseError(['-n', '1', '-rps', '1'])).toMatch(
      /-k <api key> and -e <endpoint> are required/,
    );
    expect(
      parseError(['-n', '1', '-rps', '1', '--concurrency', '2', '-k', 'k', '-e', 'e']),
    ).toMatch(/--mode/);
    expect(parseError(['-n', '1', '-rps', '1', '--worker-url', 'ftp://x'])).toMatch(
      /--worker-url must be an http\(s\) URL/,
    );
    expect(parseError(['-n', '1', '-rps', '1', '--worker-url', 'http://x', '-l'])).toMatch(
      /drop -l/,
    );
    expect(
      parseError(['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e', '--arrivals', 'bursty']),
    ).toMatch(/poisson or uniform/);
    expect(
      parseError(['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e', '--max-error-rate', '2']),
    ).toMatch(/fraction/);
    expect(
      parseError(['-n', '1', '-rps', '1', '-k', 'k', '-e', 'e', '--route', 'generate']),
    ).toMatch(/start with "\/"/);
  });

  it("report an unknown flag with node's first sentence only", () => {
    expect(parseError(['--bogus'])).toBe("Unknown option '--bogus'");
  });

  it('need nothing else with --help', () => {
    expect(parseTestLoadArgs(['--help']).help).toBe(true);
  });
});
