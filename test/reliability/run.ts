/**
 * `npm run test:reliability [-- --quick] [--only a,b] [--json file]`: the fault-and-fuzz harness.
 *
 * Starts real processes on 127.0.0.1 (the worker as `tsworker start hello_world`, the example
 * model server, the local autoscaler), drives each scenario's traffic and prints one line per
 * scenario with its figures and PASS or FAIL; exits 1 when any failed. `--quick` is CI's mode:
 * smaller counts and shorter phases, under 3 minutes on 2 cores. Progress goes to stderr.
 */
import { writeFileSync } from 'node:fs';
import { killAll } from './support/processes.ts';
import type { Scenario, Verdict } from './support/scenario.ts';
import { sleep } from './support/timing.ts';
import { bigBodiesScenario } from './scenarios/big-bodies.ts';
import { drainScenario } from './scenarios/drain.ts';
import { hostileBodiesScenario } from './scenarios/hostile-bodies.ts';
import { logFaultsScenario } from './scenarios/log-faults.ts';
import { modelFaultsScenario } from './scenarios/model-faults.ts';
import { outageScenario } from './scenarios/outage.ts';
import { signaturesScenario } from './scenarios/signatures.ts';
import { soakScenario } from './scenarios/soak.ts';

const SCENARIOS: readonly Scenario[] = [
  hostileBodiesScenario,
  bigBodiesScenario,
  modelFaultsScenario,
  outageScenario,
  logFaultsScenario,
  drainScenario,
  signaturesScenario,
  soakScenario,
];

interface Options {
  quick: boolean;
  soakRequests: number | undefined;
  only: readonly string[] | undefined;
  json: string | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  const options: Options = {
    quick: false,
    soakRequests: undefined,
    only: undefined,
    json: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') options.quick = true;
    else if (arg === '--full') options.quick = false;
    else if (arg === '--only') options.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (arg === '--json') options.json = argv[++i];
    else if (arg === '--soak-requests') {
      options.soakRequests = Number(argv[++i]);
      if (!Number.isSafeInteger(options.soakRequests) || options.soakRequests <= 0) {
        process.stderr.write('--soak-requests needs a positive integer\n');
        process.exit(2);
      }
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(
        'usage: npm run test:reliability -- [--quick] [--only name,name] [--json file] ' +
          '[--soak-requests n]\n' +
          `scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}\n`,
      );
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${String(arg)}\n`);
      process.exit(2);
    }
  }
  const unknown = (options.only ?? []).filter((name) => !SCENARIOS.some((s) => s.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}\n`);
    process.exit(2);
  }
  return options;
}

interface Result {
  readonly name: string;
  readonly passed: boolean;
  readonly durationMs: number;
  readonly figures: readonly string[];
  readonly failures: readonly string[];
  readonly data: Record<string, unknown>;
}

async function runOne(scenario: Scenario, options: Options): Promise<Result> {
  const quick = options.quick;
  const started = Date.now();
  const limitMs = scenario.timeLimitMs(quick);
  const progress = (message: string): void => {
    const at = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`  [${scenario.name} ${at} s] ${message}\n`);
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), limitMs);
  });
  const running = scenario.run({ quick, soakRequests: options.soakRequests, progress });
  let verdict: Verdict | undefined;
  let error: unknown;
  try {
    const outcome = await Promise.race([running, timedOut]);
    if (outcome === 'timeout') {
      error = new Error(`exceeded its time limit of ${limitMs / 1000} s`);
      // Killing its processes makes every pending call fail, so the scenario unwinds and cleans up.
      killAll();
      await Promise.race([running.catch(() => undefined), sleep(20_000)]);
    } else {
      verdict = outcome;
    }
  } catch (caught) {
    error = caught;
  } finally {
    clearTimeout(timer);
  }
  // Whatever the scenario left behind goes before the next one starts.
  killAll();
  const failures = [...(verdict?.failures ?? [])];
  if (error !== undefined) {
    failures.push(`error: ${error instanceof Error ? error.message : String(error)}`);
  }
  return {
    name: scenario.name,
    passed: failures.length === 0,
    durationMs: Date.now() - started,
    figures: verdict?.figures ?? [],
    failures,
    data: verdict?.data ?? {},
  };
}

function line(result: Result): string {
  const head = `${result.passed ? 'PASS' : 'FAIL'} ${result.name.padEnd(15)}`;
  const figures = result.figures.join(', ');
  const took = `[${(result.durationMs / 1000).toFixed(1)} s]`;
  const why = result.failures.length === 0 ? '' : ` — ${result.failures.join('; ')}`;
  return `${head} ${figures} ${took}${why}`.replace(/\s+/g, ' ').replace(/^(PASS|FAIL) /, '$1  ');
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const chosen = SCENARIOS.filter(
    (s) =>
      (options.only === undefined || options.only.includes(s.name)) &&
      (!options.quick || s.fullOnly !== true),
  );
  const mode = options.quick ? 'quick' : 'full';
  process.stderr.write(`reliability (${mode} mode): ${chosen.map((s) => s.name).join(', ')}\n`);
  const started = Date.now();
  const results: Result[] = [];
  for (const scenario of chosen) {
    const result = await runOne(scenario, options);
    results.push(result);
    process.stdout.write(`${line(result)}\n`);
  }
  const passed = results.filter((r) => r.passed).length;
  const failed = results.length - passed;
  const totalMs = Date.now() - started;
  process.stdout.write(`${mode} mode, ${(totalMs / 1000).toFixed(1)} s in all\n`);
  process.stdout.write(`reliability: ${passed} passed, ${failed} failed\n`);
  if (options.json !== undefined) {
    writeFileSync(
      options.json,
      `${JSON.stringify({ mode, totalMs, node: process.version, results }, null, 2)}\n`,
    );
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  process.stderr.write(
    `reliability: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  killAll();
  process.exit(1);
});
