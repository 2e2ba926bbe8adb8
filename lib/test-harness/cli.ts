/**
 * The `test_load` command line (PyWorker's `test_load_cmd`): the original flags (-n, -rps, -k, -e,
 * -l) plus ours, a live view, the summary and an exit code. `tsworker test_load` and each worker's
 * own test_load.ts both end up here, so the flags are the same either way.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { seededRandom } from './arrivals.ts';
import type { LoadTestDefinition, LoadTestRoute } from './definition.ts';
import { startLoad } from './engine.ts';
import type {
  ClosedSchedule,
  LoadResult,
  LoadRun,
  OpenSchedule,
  PlannedRequest,
} from './load-types.ts';
import {
  formatProgress,
  formatProgressLine,
  formatSummary,
  summarize,
  formatPercent,
  type LoadSummary,
  type RunDescription,
} from './report.ts';
import { directTarget, errorCode, routeTarget, type Target } from './targets.ts';
import { errorMessage } from '../internal/values.ts';

export const PRODUCTION_AUTOSCALER = 'https://run.vast.ai';
export const LOCAL_AUTOSCALER = 'http://127.0.0.1:8081';

export const TEST_LOAD_USAGE = `Usage: tsworker test_load -n <requests> (-rps <rate> | --concurrency <users>) [flags]
       npx tsx workers/<worker>/test_load.ts -n <requests> -rps <rate> -k <api key> -e <endpoint> [-l]

Sends load to an endpoint through the autoscaler's /route/ (re-routing on 408, 429 and 5xx with
capped backoff, as the vastai client does), or straight to one worker, and reports latency, time to
first byte and token, tokens per second, errors by cause and the workers that answered.

Requests and rate:
  -n, --requests <n>       requests to send (counted); required
  -rps, --rps <rate>       open loop: start requests at this rate (requests per second)
  -c, --concurrency <n>    closed loop: n users, each sending its next request when the last ends
  --mode open|closed       default: open with -rps, closed with --concurrency
  --arrivals poisson|uniform   open loop spacing (default poisson)
  --ramp <seconds>         raise the rate from 0 (open) or start users evenly (closed) over this time
  --warmup <n>             send n requests first and do not count them (default 0)

Where requests go:
  -k, --api-key <key>      endpoint API key (sent to /route/)
  -e, --endpoint <name>    endpoint group name
  -l, --local              use the local autoscaler ${LOCAL_AUTOSCALER} instead of ${PRODUCTION_AUTOSCALER}
  --autoscaler <url>       use this autoscaler
  --worker-url <url>       call one worker directly, without an autoscaler (an UNSECURED worker)
  --ca <file>              extra CA certificate (PEM) for TLS workers, e.g. Vast's root CA

What is sent:
  --worker <name>          the worker whose workers/<name>/test_load.ts makes payloads (default hello_world)
  --route <path>           the worker route to call (default: the worker's first, e.g. /generate)
  --payload-file <file>    payloads from a JSON array or a JSONL file instead, used in turn
  --verify                 check every answer with the worker's verify hook; a wrong one is an error

Limits and output:
  --timeout <seconds>      deadline of one request, routing and retries included (default 600; 0: none)
  --retries <n>            re-routes after a retryable failure (default 3)
  --max-error-rate <r>     exit 1 when the error rate is above r (0.05 or 5%)
  --json <file>            write the summary as JSON ("-" for stdout)
  --seed <n>               seed the Poisson arrivals, for a repeatable schedule
  -q, --quiet              no live view
  -h, --help               this text

Examples:
  npm run test_load -- -n 100 -rps 10 -k local -e hello -l
  npm run test_load -- -n 500 --concurrency 16 --route /generate_stream -k local -e hello -l --verify
  npm run test_load -- -n 50 -rps 5 --worker-url http://127.0.0.1:3000 --json result.json
`;

/** A bad flag: one message, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface TestLoadOptions {
  readonly help: boolean;
  readonly count: number;
  readonly mode: 'open' | 'closed';
  readonly rate: number | undefined;
  readonly arrivals: 'poisson' | 'uniform';
  readonly concurrency: number | undefined;
  readonly rampSeconds: number;
  readonly warmup: number;
  readonly apiKey: string | undefined;
  readonly endpoint: string | undefined;
  /** Set unless `workerUrl` is. */
  readonly autoscalerUrl: string | undefined;
  readonly workerUrl: string | undefined;
  readonly ca: string | undefined;
  readonly worker: string;
  readonly route: string | undefined;
  readonly payloadFile: string | undefined;
  readonly verify: boolean;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly maxErrorRate: number | undefined;
  readonly json: string | undefined;
  readonly seed: number | undefined;
  readonly quiet: boolean;
}

const FLAGS = {
  requests: { type: 'string', short: 'n' },
  rps: { type: 'string' },
  concurrency: { type: 'string', short: 'c' },
  mode: { type: 'string' },
  arrivals: { type: 'string' },
  ramp: { type: 'string' },
  warmup: { type: 'string' },
  'api-key': { type: 'string', short: 'k' },
  endpoint: { type: 'string', short: 'e' },
  local: { type: 'boolean', short: 'l' },
  autoscaler: { type: 'string' },
  'worker-url': { type: 'string' },
  ca: { type: 'string' },
  worker: { type: 'string' },
  route: { type: 'string' },
  'payload-file': { type: 'string' },
  verify: { type: 'boolean' },
  timeout: { type: 'string' },
  retries: { type: 'string' },
  'max-error-rate': { type: 'string' },
  json: { type: 'string' },
  seed: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** PyWorker's flags are single-dash words (`-rps 2`); node's parser reads those as `-r -p -s`. */
export function normalizeArgv(argv: readonly string[]): string[] {
  return argv.map((arg) => (arg === '-rps' || arg.startsWith('-rps=') ? `-${arg}` : arg));
}

function number(
  flag: string,
  raw: string | undefined,
  check: (n: number) => boolean,
  what: string,
): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || !check(value)) {
    throw new UsageError(`${flag} must be ${what}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const wholeAtLeast = (min: number) => (n: number) => Number.isInteger(n) && n >= min;

function httpUrl(flag: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${flag} must be an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${flag} must be an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  return raw.endsWith('/') ? raw.slice(0, -1) : raw;
}

/** node's parser with our flags; its errors become one short `UsageError`. */
function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({
      args: normalizeArgv(argv),
      options: FLAGS,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    // node's messages are clear but long ("Unknown option '-x'. To specify a positional..."): keep the first sentence.
    const message = errorMessage(error);
    throw new UsageError(message.split('. ')[0]?.replace(/\.$/, '') ?? message);
  }
}

type FlagValues = ReturnType<typeof parseFlags>;

/** What `--help` parses to: nothing else is read. */
const HELP_DEFAULTS = {
  count: 0,
  mode: 'open',
  rate: undefined,
  arrivals: 'poisson',
  concurrency: undefined,
  rampSeconds: 0,
  warmup: 0,
  apiKey: undefined,
  endpoint: undefined,
  autoscalerUrl: undefined,
  workerUrl: undefined,
  ca: undefined,
  route: undefined,
  payloadFile: undefined,
  timeoutMs: 0,
  retries: 0,
  maxErrorRate: undefined,
  json: undefined,
  seed: undefined,
} as const;

/** Parses and checks the flags; throws `UsageError` with one clear message. */
export function parseTestLoadArgs(argv: readonly string[]): TestLoadOptions {
  const values = parseFlags(argv);
  const base = {
    help: values.help === true,
    worker: values.worker ?? 'hello_world',
    quiet: values.quiet === true,
    verify: values.verify === true,
  };
  if (base.help) return { ...base, ...HELP_DEFAULTS };
  // Checked in this order, so the first bad flag is the one reported.
  const count = number('-n', values.requests, wholeAtLeast(1), 'a whole number >= 1');
  if (count === undefined) throw new UsageError('-n <requests> is required');
  const schedule = scheduleFlags(values);
  const destination = destinationFlags(values);
  const route = values.route;
  if (route !== undefined && !route.startsWith('/')) {
    throw new UsageError(`--route must start with "/", got ${JSON.stringify(route)}`);
  }
  const maxErrorRate = maxErrorRateFlag(values['max-error-rate']);
  return {
    ...base,
    count,
    ...schedule,
    rampSeconds: number('--ramp', values.ramp, (n) => n >= 0, 'a number of seconds >= 0') ?? 0,
    warmup: number('--warmup', values.warmup, wholeAtLeast(0), 'a whole number >= 0') ?? 0,
    ...destination,
    ca: values.ca,
    route,
    payloadFile: values['payload-file'],
    timeoutMs:
      (number('--timeout', values.timeout, (n) => n >= 0, 'a number of seconds >= 0') ?? 600) *
      1000,
    retries: number('--retries', values.retries, wholeAtLeast(0), 'a whole number >= 0') ?? 3,
    maxErrorRate,
    json: values.json,
    seed: number('--seed', values.seed, Number.isInteger, 'a whole number'),
  };
}

/** The loop (open with -rps, closed with --concurrency, or as --mode says) and its shape. */
function scheduleFlags(
  values: FlagValues,
): Pick<TestLoadOptions, 'mode' | 'rate' | 'arrivals' | 'concurrency'> {
  const rate = number('-rps', values.rps, (n) => n > 0, 'a number > 0');
  const concurrency = number(
    '--concurrency',
    values.concurrency,
    wholeAtLeast(1),
    'a whole number >= 1',
  );
  const mode = loopMode(values.mode, rate, concurrency);
  const arrivals = values.arrivals ?? 'poisson';
  if (arrivals !== 'poisson' && arrivals !== 'uniform') {
    throw new UsageError(`--arrivals must be poisson or uniform, got ${JSON.stringify(arrivals)}`);
  }
  return { mode, rate, arrivals, concurrency };
}

function loopMode(
  flag: string | undefined,
  rate: number | undefined,
  concurrency: number | undefined,
): 'open' | 'closed' {
  let mode: 'open' | 'closed';
  if (flag !== undefined) {
    if (flag !== 'open' && flag !== 'closed') {
      throw new UsageError(`--mode must be open or closed, got ${JSON.stringify(flag)}`);
    }
    mode = flag;
  } else if (rate !== undefined && concurrency !== undefined) {
    throw new UsageError('both -rps and --concurrency given: add --mode open or --mode closed');
  } else if (rate !== undefined) {
    mode = 'open';
  } else if (concurrency !== undefined) {
    mode = 'closed';
  } else {
    throw new UsageError(
      '-rps <rate> (open loop) or --concurrency <users> (closed loop) is required',
    );
  }
  if (mode === 'open' && rate === undefined) throw new UsageError('--mode open needs -rps <rate>');
  if (mode === 'closed' && concurrency === undefined)
    throw new UsageError('--mode closed needs --concurrency <users>');
  return mode;
}

/** Through an autoscaler (-k, -e, -l or --autoscaler), or straight to --worker-url. */
function destinationFlags(
  values: FlagValues,
): Pick<TestLoadOptions, 'apiKey' | 'endpoint' | 'autoscalerUrl' | 'workerUrl'> {
  const workerUrl =
    values['worker-url'] === undefined ? undefined : httpUrl('--worker-url', values['worker-url']);
  const apiKey = values['api-key'];
  const endpoint = values.endpoint;
  if (workerUrl !== undefined) {
    if (values.autoscaler !== undefined || values.local === true) {
      throw new UsageError(
        '--worker-url calls the worker directly: drop -l/--autoscaler, or drop --worker-url',
      );
    }
    return { apiKey, endpoint, autoscalerUrl: undefined, workerUrl };
  }
  if (apiKey === undefined || endpoint === undefined) {
    throw new UsageError(
      '-k <api key> and -e <endpoint> are required, unless --worker-url calls a worker directly',
    );
  }
  const autoscalerUrl =
    values.autoscaler !== undefined
      ? httpUrl('--autoscaler', values.autoscaler)
      : values.local === true
        ? LOCAL_AUTOSCALER
        : PRODUCTION_AUTOSCALER;
  return { apiKey, endpoint, autoscalerUrl, workerUrl };
}

/** A fraction (0.05) or a percentage (5%). */
function maxErrorRateFlag(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const percent = raw.endsWith('%');
  const value = number(
    '--max-error-rate',
    percent ? raw.slice(0, -1) : raw,
    (n) => n >= 0 && n <= (percent ? 100 : 1),
    'a fraction 0..1 or a percentage like 5%',
  );
  return percent ? (value as number) / 100 : value;
}

/** Reads payloads from a JSON array, or one JSON value per line (JSONL). */
export async function readPayloadFile(file: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--payload-file ${file}: ${errorCode(error) === 'ENOENT' ? 'no such file' : String(error)}`,
    );
  }
  const trimmed = text.trim();
  if (trimmed === '') throw new UsageError(`--payload-file ${file} is empty`);
  if (trimmed.startsWith('[')) {
    try {
      const items = JSON.parse(trimmed) as unknown;
      if (Array.isArray(items) && items.length > 0) return items;
    } catch {
      // Perhaps JSONL whose first line is an array; tried below.
    }
  }
  const lines = trimmed.split('\n').filter((line) => line.trim() !== '');
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as unknown;
    } catch {
      throw new UsageError(
        `--payload-file ${file}: line ${i + 1} is not JSON (expected a JSON array or JSONL)`,
      );
    }
  });
}

/** Where the command writes. Defaults to the process's own streams. */
export interface TestLoadIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream;
  /** Stop on the first Ctrl-C, cancel on the second. @default true */
  readonly handleSignals?: boolean;
  /** Plain progress lines every this many ms when stdout is not a terminal. @default 1000 */
  readonly progressIntervalMs?: number;
}

function processIo(): TestLoadIo {
  return { stdout: process.stdout, stderr: process.stderr, handleSignals: true };
}

/** Any HTTP answer means the server is there; only a failed connection stops the run. */
async function checkReachable(
  url: string,
  what: string,
  ca: string | undefined,
  hint: string,
): Promise<void> {
  const agent = new Agent({ ...(ca === undefined ? {} : { connect: { ca } }) });
  try {
    const response = await request(url, {
      dispatcher: agent,
      headersTimeout: 5000,
      bodyTimeout: 5000,
    });
    await response.body.dump();
  } catch (error) {
    const code = errorCode(error) ?? errorMessage(error);
    throw new RunError(`cannot reach the ${what} at ${url} (${code}).${hint}`);
  } finally {
    await agent.close();
  }
}

/** The run could not start (unreachable server, unreadable file): one message, exit code 1. */
export class RunError extends Error {}

function buildTarget(options: TestLoadOptions, random: () => number): Target {
  if (options.workerUrl !== undefined)
    return directTarget({ url: options.workerUrl, envelope: 'worker' });
  return routeTarget({
    autoscalerUrl: options.autoscalerUrl as string,
    endpoint: options.endpoint as string,
    apiKey: options.apiKey as string,
    random,
  });
}

function planner(
  spec: LoadTestRoute<unknown> | undefined,
  route: string,
  payloads: readonly unknown[] | undefined,
  verify: boolean,
): (index: number) => PlannedRequest {
  const cost = spec?.cost;
  const check = verify ? spec?.verify : undefined;
  const tokens = spec?.tokens;
  return (index) => {
    const payload =
      payloads === undefined
        ? (spec as LoadTestRoute<unknown>).payload(index)
        : payloads[index % payloads.length];
    let requestCost = 100;
    if (cost !== undefined) {
      try {
        requestCost = cost(payload);
      } catch {
        // A payload from a file may not suit the worker's cost function; the default cost is fine.
      }
    }
    return {
      route,
      payload,
      cost: requestCost,
      ...(check === undefined ? {} : { verify: check }),
      ...(tokens === undefined ? {} : { tokens }),
    };
  };
}

/** What a run sends: the route, its payload maker (or the file's payloads) and the CA file's text. */
interface RunInputs {
  readonly route: string;
  readonly spec: LoadTestRoute<unknown> | undefined;
  readonly payloads: readonly unknown[] | undefined;
  readonly ca: string | undefined;
}

async function runInputs(
  options: TestLoadOptions,
  definition: LoadTestDefinition | undefined,
): Promise<RunInputs> {
  const route = options.route ?? definition?.defaultRoute;
  if (route === undefined) {
    throw new UsageError(
      `worker ${options.worker} has no test_load.ts: give --route and --payload-file`,
    );
  }
  const spec = definition?.routes[route];
  const payloads =
    options.payloadFile === undefined ? undefined : await readPayloadFile(options.payloadFile);
  if (spec === undefined && payloads === undefined) {
    const known =
      definition === undefined ? '' : ` (it has ${Object.keys(definition.routes).join(', ')})`;
    throw new UsageError(
      `worker ${options.worker} makes no payloads for route ${route}${known}: give --payload-file`,
    );
  }
  if (options.verify && spec?.verify === undefined) {
    throw new UsageError(
      `--verify: worker ${options.worker} has no verify check for route ${route}`,
    );
  }
  return { route, spec, payloads, ca: await readCa(options.ca) };
}

async function readCa(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--ca ${file}: ${errorCode(error) === 'ENOENT' ? 'no such file' : String(error)}`,
    );
  }
}

/** The worker, or the autoscaler in front of it, must answer before the run starts. */
async function checkTarget(options: TestLoadOptions, ca: string | undefined): Promise<void> {
  if (options.workerUrl !== undefined) {
    await checkReachable(options.workerUrl, 'worker', ca, ' Is it running?');
    return;
  }
  const local = options.autoscalerUrl === LOCAL_AUTOSCALER;
  await checkReachable(
    options.autoscalerUrl as string,
    'autoscaler',
    ca,
    local ? ' Start the local stack first (npm start).' : ' Check the address and the network.',
  );
}

function describeRun(
  options: TestLoadOptions,
  definition: LoadTestDefinition | undefined,
  route: string,
  target: Target,
): RunDescription {
  return {
    worker: definition?.name ?? options.worker,
    route,
    target: { kind: target.kind, description: target.description },
    mode: options.mode,
    arrivals: options.mode === 'open' ? options.arrivals : undefined,
    requestedRate: options.mode === 'open' ? options.rate : undefined,
    concurrency: options.mode === 'closed' ? options.concurrency : undefined,
    rampSeconds: options.rampSeconds,
  };
}

function scheduleOf(options: TestLoadOptions): OpenSchedule | ClosedSchedule {
  if (options.mode === 'open') {
    return {
      kind: 'open',
      rate: options.rate as number,
      arrivals: options.arrivals,
      rampSeconds: options.rampSeconds,
    };
  }
  return {
    kind: 'closed',
    concurrency: options.concurrency as number,
    rampSeconds: options.rampSeconds,
  };
}

/** The live view: redrawn in place on a terminal, plain progress lines elsewhere. */
interface LiveView {
  tick(): void;
  /** Draws the final state (terminal only). */
  finish(): void;
  readonly intervalMs: number;
}

async function liveView(
  io: TestLoadIo,
  human: NodeJS.WritableStream,
  run: LoadRun,
  description: RunDescription,
): Promise<LiveView> {
  if (human !== io.stdout || io.stdout.isTTY !== true) {
    return {
      tick: () => human.write(`${formatProgressLine(run.progress())}\n`),
      finish: () => undefined,
      intervalMs: io.progressIntervalMs ?? 1000,
    };
  }
  // Redraws only its own lines, in place; never clears the screen.
  // Loaded only for a terminal, so importing lib/index.ts stays light.
  const { createLogUpdate } = await import('log-update');
  const draw = createLogUpdate(io.stdout as NodeJS.WriteStream, { showCursor: true });
  const tick = (): void => draw(formatProgress(run.progress(), description));
  return {
    tick,
    finish: () => {
      tick();
      draw.done();
    },
    intervalMs: 200,
  };
}

/** Waits for the run while the view ticks; the first Ctrl-C stops it, the second cancels. */
async function awaitRun(
  run: LoadRun,
  view: LiveView | undefined,
  io: TestLoadIo,
): Promise<LoadResult> {
  const timer = view === undefined ? undefined : setInterval(() => view.tick(), view.intervalMs);
  timer?.unref();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      io.stderr.write(
        '\nstopping: no new requests; waiting for those in flight (Ctrl-C again to cancel them)\n',
      );
      run.stop();
    } else {
      run.abort();
    }
  };
  if (io.handleSignals !== false) process.on('SIGINT', onSigint);
  try {
    return await run.result;
  } finally {
    if (timer !== undefined) clearInterval(timer);
    if (io.handleSignals !== false) process.off('SIGINT', onSigint);
  }
}

async function writeJsonSummary(file: string, summary: LoadSummary, io: TestLoadIo) {
  const text = `${JSON.stringify(summary, null, 2)}\n`;
  if (file === '-') {
    io.stdout.write(text);
    return;
  }
  try {
    await writeFile(file, text);
  } catch (error) {
    throw new RunError(`--json ${file}: ${errorMessage(error)}`);
  }
}

/** Runs a parsed command: returns the exit code (0, 1 above --max-error-rate or on a run error). */
export async function runTestLoad(
  options: TestLoadOptions,
  definition: LoadTestDefinition | undefined,
  io: TestLoadIo = processIo(),
): Promise<number> {
  const { route, spec, payloads, ca } = await runInputs(options, definition);
  await checkTarget(options, ca);
  const random = options.seed === undefined ? Math.random : seededRandom(options.seed);
  const target = buildTarget(options, random);
  const description = describeRun(options, definition, route, target);
  const run = startLoad({
    target,
    plan: planner(spec, route, payloads, options.verify),
    count: options.count,
    schedule: scheduleOf(options),
    warmup: options.warmup,
    retry: { retries: options.retries },
    timeoutMs: options.timeoutMs,
    ...(ca === undefined ? {} : { ca }),
    random,
  });
  // With the JSON on stdout, everything for people goes to stderr.
  const human = options.json === '-' ? io.stderr : io.stdout;
  const view = options.quiet ? undefined : await liveView(io, human, run, description);
  const result = await awaitRun(run, view, io);
  const summary = summarize(result, description, options.count);
  view?.finish();
  human.write(`\n${formatSummary(summary)}`);
  if (options.json !== undefined) await writeJsonSummary(options.json, summary, io);
  if (options.maxErrorRate !== undefined && summary.errorRate > options.maxErrorRate) {
    io.stderr.write(
      `test_load: error rate ${formatPercent(summary.errorRate)} is above --max-error-rate ${formatPercent(options.maxErrorRate)}\n`,
    );
    return 1;
  }
  return 0;
}

/**
 * Parses `argv`, runs, and maps every expected failure to one line on stderr: 2 for bad flags, 1 for
 * a run that could not start or passed --max-error-rate, 0 otherwise.
 */
export async function testLoadMain(
  argv: readonly string[],
  definition:
    | LoadTestDefinition
    | undefined
    | ((options: TestLoadOptions) => Promise<LoadTestDefinition | undefined>),
  io: TestLoadIo = processIo(),
): Promise<number> {
  try {
    const options = parseTestLoadArgs(argv);
    if (options.help) {
      io.stdout.write(TEST_LOAD_USAGE);
      return 0;
    }
    const resolved = typeof definition === 'function' ? await definition(options) : definition;
    return await runTestLoad(options, resolved, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`test_load: ${error.message}\nRun with --help for the flags.\n`);
      return 2;
    }
    if (error instanceof RunError) {
      io.stderr.write(`test_load: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** True in the module that node was asked to run: lets a worker's test_load.ts be run directly. */
export function isEntryPoint(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return moduleUrl === pathToFileURL(entry).href;
  }
}
