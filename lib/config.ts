import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { trimTrailingSlashes } from './internal/values.ts';

/**
 * The worker's configuration, read once from the environment at start-up, validated and frozen.
 * Every variable, its default and its meaning is listed here once; README's table mirrors it and a
 * test keeps the two in step. An empty string counts as unset.
 */
export interface ResolvedConfig {
  /** `WORKER_PORT`: main listener port. @default 3000 */
  readonly workerPort: number;
  /** `WORKER_HTTP_PORT`: plain-HTTP `/session/end` listener. @default WORKER_PORT + 1 */
  readonly workerHttpPort: number;
  /** `WORKER_HOST`: bind address of both listeners. @default 0.0.0.0 */
  readonly workerHost: string;
  /** `REPORT_ADDR`: autoscaler base URLs, comma-separated, tried in order. @default none (no reports) */
  readonly reportAddrs: readonly string[];
  /** `CONTAINER_ID`: worker id in reports. Required with REPORT_ADDR. */
  readonly containerId: number;
  /** `PUBLIC_IPADDR`: public address in the reported URL. Required with REPORT_ADDR. @default 127.0.0.1 */
  readonly publicIpAddr: string;
  /** `VAST_TCP_PORT_<WORKER_PORT>`: public port in the reported URL. @default WORKER_PORT */
  readonly publicPort: number;
  /** `USE_SSL`: exactly "true" serves HTTPS and reports an https URL. @default false */
  readonly useSsl: boolean;
  /** `SSL_CERT_FILE` / `SSL_KEY_FILE`. @default /etc/instance.crt, /etc/instance.key */
  readonly sslCertFile: string;
  readonly sslKeyFile: string;
  /** `UNSECURED`: skip signature verification (strtobool). @default false */
  readonly unsecured: boolean;
  /** `MASTER_TOKEN`: sent as mtoken; Bearer token of /pyworker/update. @default unset */
  readonly masterToken: string | undefined;
  /** `METRICS_TOKEN`: when set, GET /metrics needs `Authorization: Bearer <token>`. @default unset (open) */
  readonly metricsToken: string | undefined;
  /** `MODEL_LOG`: the model server's log file, tailed for readiness. @default unset */
  readonly modelLog: string | undefined;
  /** `MODEL_SERVER_URL`: overrides the worker's default model server. */
  readonly modelServerUrl: string | undefined;
  /** `AUTH_MODE`: "current" (signature over {url}) or "legacy" (all fields, reqnum window). */
  readonly authMode: 'current' | 'legacy';
  /** `ASSUMED_THROUGHPUT`: workload/s used for admission before a benchmark exists. */
  readonly assumedThroughput: number | undefined;
  /** `MAX_CONNECTIONS`: connections to the model server. @default 100 */
  readonly maxConnections: number;
  /** `MAX_BODY_BYTES`: largest request body on any listener; 413 beyond it. @default 16 MiB */
  readonly maxBodyBytes: number;
  /** `MAX_PENDING_DELETE_REQUESTS`: undelivered /delete_requests/ entries kept. @default 60000 */
  readonly maxPendingDeletes: number;
  /** `HEADERS_TIMEOUT_SECONDS`: time a client has to send its request headers. @default 30 */
  readonly headersTimeoutSeconds: number;
  /**
   * `REQUEST_TIMEOUT_SECONDS`: time a client has to send its whole request, body included (not the
   * answer). @default 300: a 16 MiB body at 56 KB/s
   */
  readonly requestTimeoutSeconds: number;
  /**
   * `REFUSED_BODY_LINGER_SECONDS`: after a 413, how long the rest of the body is read and thrown
   * away before the connection closes, so a client that writes its whole body before reading still
   * gets the answer. 0 closes at once. @default 30
   */
  readonly refusedBodyLingerSeconds: number;
  /** `REFUSED_BODY_LINGER_BYTES`: the most of a refused body read and thrown away. @default 128 MiB */
  readonly refusedBodyLingerBytes: number;
  /** `MAX_CONNECTIONS_PER_LISTENER`: open client connections per listener. @default unlimited */
  readonly maxConnectionsPerListener: number | undefined;
  /** `BENCHMARK_CACHE`: where the benchmark result is kept. @default .has_benchmark */
  readonly benchmarkCacheFile: string;
  /** `TERMINATION_GRACE_PERIOD_SECONDS`: drain time on SIGTERM. @default 300 */
  readonly terminationGracePeriodSeconds: number;
  /**
   * `LOG_LEVEL`: trace, debug, info, warn, error, fatal or silent, in any case; Python's `WARNING`
   * and `CRITICAL` mean warn and fatal. @default info
   */
  readonly logLevel: LogLevel;
  /** `FORCE_UPDATE_FILE`: marker written by /pyworker/update. @default /.force_update */
  readonly forceUpdateFile: string;
  /**
   * `READINESS`: what tells the worker the model is loaded: `logs` (a load line in MODEL_LOG),
   * `health` (the first passing healthcheck; `healthcheck`, the reference's word, is accepted) or
   * `both` (whichever comes first). @default logs
   */
  readonly readiness: ReadinessMode;
  /** `HEALTHCHECK_FAILURES`: consecutive failed (or passed) checks that error (or clear) the worker. @default 3 */
  readonly healthcheckFailures: number;
  /** Readiness and reporting timings, in seconds (protocol §6, §8). Tests shorten them. */
  readonly timings: Timings;
}

export interface Timings {
  /** `HEALTHCHECK_INTERVAL_SECONDS`: model healthcheck period. @default 10 */
  readonly healthcheckInterval: number;
  /** `HEALTHCHECK_TIMEOUT_SECONDS`: one healthcheck request. @default 10 */
  readonly healthcheckTimeout: number;
  /** `HEALTHCHECK_READY_TIMEOUT_SECONDS`: wait for the first healthy check after the benchmark. @default 300 */
  readonly healthcheckReadyTimeout: number;
  /** `NO_HEALTHCHECK_WAIT_SECONDS`: wait used instead when the worker has no healthcheck. @default 10 */
  readonly noHealthcheckWait: number;
  /** `PUBKEY_WAIT_SECONDS`: wait for the public key before reporting loaded. @default 60 */
  readonly pubkeyWait: number;
  /** `REPORT_TICK_SECONDS`: how often the reporter looks for news. @default 1 */
  readonly reportTick: number;
  /** `REPORT_IDLE_SECONDS`: longest gap between two /worker_status/ reports. @default 10 */
  readonly reportIdle: number;
  /** `REPORT_TIMEOUT_SECONDS`: one report POST. @default 10 */
  readonly reportTimeout: number;
  /** `REPORT_RETRY_DELAY_SECONDS`: pause after a failed report attempt. @default 2 */
  readonly reportRetryDelay: number;
  /** `ERROR_BEACON_INTERVAL_SECONDS`: period of the failed-start-up beacon. @default 10 */
  readonly errorBeaconInterval: number;
  /** `READINESS_TIMEOUT`: READINESS=health or both: longest wait for the model to be loaded. @default 300 */
  readonly readinessTimeout: number;
  /** `READINESS_GRACE_SECONDS`: READINESS=logs: without a load line by then, a passing healthcheck counts. @default 60 */
  readonly readinessGrace: number;
  /** `READINESS_LOG_INTERVAL_SECONDS`: period of the "still waiting for the model" line. @default 60 */
  readonly readinessLogInterval: number;
}

/** What tells the worker that the model is loaded (`READINESS`). */
export type ReadinessMode = 'logs' | 'health' | 'both';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Python's level names that differ from pino's: PyWorker users write `LOG_LEVEL=WARNING`. */
const LOG_LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = {
  warning: 'warn',
  critical: 'fatal',
};

/** `LOG_LEVEL` in any case (`DEBUG`, `Info`), Python's names included. */
export function parseLogLevel(value: string): LogLevel | undefined {
  const word = value.trim().toLowerCase();
  const level = LOG_LEVEL_ALIASES[word] ?? word;
  return (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : undefined;
}

/** Fits a 128k-token prompt (about 0.5 MB) and several base64 images. */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

const TRUE_WORDS = new Set(['y', 'yes', 't', 'true', 'on', '1']);
const FALSE_WORDS = new Set(['n', 'no', 'f', 'false', 'off', '0']);

/** Python's distutils.strtobool, which PyWorker uses for UNSECURED. */
const strtobool = z.string().transform((value, ctx) => {
  const word = value.toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  ctx.addIssue({
    code: 'custom',
    message: `expected a boolean (true/false, yes/no, 1/0), got "${value}"`,
  });
  return z.NEVER;
});

const port = z.coerce
  .number({ error: 'must be a port number (0-65535)' })
  .int({ error: 'must be a port number (0-65535)' })
  .min(0, { error: 'must be a port number (0-65535)' })
  .max(65535, { error: 'must be a port number (0-65535)' });
const positiveInteger = z.coerce
  .number({ error: 'must be a positive whole number' })
  .int({ error: 'must be a positive whole number' })
  .positive({ error: 'must be a positive whole number' });
const positive = z.coerce
  .number({ error: 'must be a positive number' })
  .positive({ error: 'must be a positive number' });
const seconds = z.coerce
  .number({ error: 'must be a number of seconds (0 or more)' })
  .nonnegative({ error: 'must be a number of seconds (0 or more)' });
const wholeNumber = z.coerce
  .number({ error: 'must be a whole number' })
  .int({ error: 'must be a whole number' });

const envSchema = z.object({
  WORKER_PORT: port.default(3000),
  WORKER_HTTP_PORT: port.optional(),
  WORKER_HOST: z.string().default('0.0.0.0'),
  REPORT_ADDR: z.string().optional(),
  CONTAINER_ID: wholeNumber.optional(),
  PUBLIC_IPADDR: z.string().optional(),
  USE_SSL: z
    .enum(['true', 'false'], { message: 'must be "true" or "false"' })
    .default('false')
    .transform((v) => v === 'true'),
  SSL_CERT_FILE: z.string().default('/etc/instance.crt'),
  SSL_KEY_FILE: z.string().default('/etc/instance.key'),
  UNSECURED: strtobool.default(false),
  MASTER_TOKEN: z.string().optional(),
  METRICS_TOKEN: z.string().optional(),
  MODEL_LOG: z.string().optional(),
  MODEL_SERVER_URL: z.url({ message: 'must be an absolute URL' }).optional(),
  AUTH_MODE: z
    .enum(['current', 'legacy'], { error: 'must be "current" or "legacy"' })
    .default('current'),
  ASSUMED_THROUGHPUT: positive.optional(),
  MAX_CONNECTIONS: positiveInteger.default(100),
  MAX_BODY_BYTES: positiveInteger.default(DEFAULT_MAX_BODY_BYTES),
  MAX_PENDING_DELETE_REQUESTS: positiveInteger.default(60_000),
  HEADERS_TIMEOUT_SECONDS: positive.default(30),
  REQUEST_TIMEOUT_SECONDS: positive.default(300),
  REFUSED_BODY_LINGER_SECONDS: seconds.default(30),
  REFUSED_BODY_LINGER_BYTES: wholeNumber
    .nonnegative({ error: 'must be a whole number (0 or more)' })
    .default(128 * 1024 * 1024),
  MAX_CONNECTIONS_PER_LISTENER: positiveInteger.optional(),
  BENCHMARK_CACHE: z.string().default('.has_benchmark'),
  TERMINATION_GRACE_PERIOD_SECONDS: seconds.default(300),
  LOG_LEVEL: z
    .string()
    .transform((value, ctx): LogLevel => {
      const level = parseLogLevel(value);
      if (level !== undefined) return level;
      ctx.addIssue({
        code: 'custom',
        message: `must be one of ${LOG_LEVELS.join(', ')} (any case), got "${value}"`,
      });
      return z.NEVER;
    })
    .default('info'),
  FORCE_UPDATE_FILE: z.string().default('/.force_update'),
  HEALTHCHECK_INTERVAL_SECONDS: positive.default(10),
  // HEALTHCHECK_PROBE_TIMEOUT is the newest reference worker's name for it; ours wins when both are set.
  HEALTHCHECK_TIMEOUT_SECONDS: positive.optional(),
  HEALTHCHECK_PROBE_TIMEOUT: positive.optional(),
  HEALTHCHECK_READY_TIMEOUT_SECONDS: positive.default(300),
  NO_HEALTHCHECK_WAIT_SECONDS: seconds.default(10),
  PUBKEY_WAIT_SECONDS: positive.default(60),
  REPORT_TICK_SECONDS: positive.default(1),
  REPORT_IDLE_SECONDS: positive.default(10),
  REPORT_TIMEOUT_SECONDS: positive.default(10),
  REPORT_RETRY_DELAY_SECONDS: seconds.default(2),
  ERROR_BEACON_INTERVAL_SECONDS: positive.default(10),
  READINESS: z
    .enum(['logs', 'health', 'both', 'healthcheck'], {
      error: (issue) => `must be "logs", "health" or "both", got "${String(issue.input)}"`,
    })
    .default('logs')
    .transform((mode): ReadinessMode => (mode === 'healthcheck' ? 'health' : mode)),
  READINESS_TIMEOUT: positive.default(300),
  READINESS_GRACE_SECONDS: seconds.default(60),
  READINESS_LOG_INTERVAL_SECONDS: positive.default(60),
  HEALTHCHECK_FAILURES: z.coerce
    .number({ error: 'must be a whole number, 1 or more' })
    .int({ error: 'must be a whole number, 1 or more' })
    .positive({ error: 'must be a whole number, 1 or more' })
    .default(3),
});

/** Every variable the worker reads (besides `VAST_TCP_PORT_<WORKER_PORT>`), for docs and tests. */
export const ENVIRONMENT_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export type EnvironmentVariable = keyof typeof envSchema.shape;

/**
 * One line per variable: its meaning and default, for `tsworker start --help`. README's table says
 * the same at more length; a test keeps both complete.
 */
export const ENVIRONMENT_VARIABLE_DOCS: Readonly<Record<EnvironmentVariable, string>> = {
  WORKER_PORT: 'main listener port (default 3000)',
  WORKER_HTTP_PORT: 'plain-HTTP listener for /session/end (default WORKER_PORT + 1)',
  WORKER_HOST: 'bind address of both listeners (default 0.0.0.0)',
  REPORT_ADDR:
    'autoscaler base URLs, comma-separated; the public key comes from <addr>/pubkey/ (required unless UNSECURED=true)',
  CONTAINER_ID: 'worker id in reports (required with REPORT_ADDR)',
  PUBLIC_IPADDR: 'public address in the reported URL (required with REPORT_ADDR)',
  USE_SSL: '"true" serves HTTPS and reports an https:// URL (default false)',
  SSL_CERT_FILE: 'TLS certificate (default /etc/instance.crt)',
  SSL_KEY_FILE: 'TLS private key (default /etc/instance.key)',
  UNSECURED: 'skip signature verification, strtobool words (default false)',
  MASTER_TOKEN: 'sent as mtoken in reports; Bearer token of /pyworker/update (default unset)',
  METRICS_TOKEN:
    'when set, GET /metrics needs "Authorization: Bearer <token>" (default unset: open)',
  MODEL_LOG: "the model server's log, tailed for readiness (default: the worker's)",
  MODEL_SERVER_URL: "the model server's base URL (default: the worker's)",
  AUTH_MODE:
    'current: signature over the URL only; legacy: over every field, with the reqnum window (default current)',
  ASSUMED_THROUGHPUT:
    "workload/s used for admission until the benchmark has run (default: the worker's, 1000)",
  MAX_CONNECTIONS: 'keep-alive connections to the model server (default 100)',
  MAX_BODY_BYTES: 'largest request body; 413 beyond it (default 16777216, 16 MiB)',
  MAX_PENDING_DELETE_REQUESTS:
    'finished requests kept for /delete_requests/ while the autoscaler is unreachable (default 60000)',
  HEADERS_TIMEOUT_SECONDS: 'time a client has to send its request headers (default 30)',
  REQUEST_TIMEOUT_SECONDS:
    'time a client has to send its whole request, never the answer (default 300)',
  REFUSED_BODY_LINGER_SECONDS:
    'after a 413, how long the rest of the body is read and discarded before closing (default 30)',
  REFUSED_BODY_LINGER_BYTES:
    'after a 413, the most of the rest of the body read and discarded (default 134217728, 128 MiB)',
  MAX_CONNECTIONS_PER_LISTENER: 'open client connections per listener (default unlimited)',
  BENCHMARK_CACHE: 'where the benchmark result is cached (default .has_benchmark)',
  TERMINATION_GRACE_PERIOD_SECONDS:
    'how long a drain (SIGTERM, SIGINT) lets requests finish (default 300)',
  LOG_LEVEL: 'trace, debug, info, warn, error, fatal or silent, any case (default info)',
  FORCE_UPDATE_FILE: 'marker file written by /pyworker/update (default /.force_update)',
  HEALTHCHECK_INTERVAL_SECONDS: 'model healthcheck period (default 10)',
  HEALTHCHECK_TIMEOUT_SECONDS: 'one healthcheck request (default 10)',
  HEALTHCHECK_PROBE_TIMEOUT: "the newest PyWorker's name for HEALTHCHECK_TIMEOUT_SECONDS",
  HEALTHCHECK_READY_TIMEOUT_SECONDS:
    'wait for the first healthy check after the benchmark (default 300)',
  NO_HEALTHCHECK_WAIT_SECONDS: 'wait used instead when the worker has no healthcheck (default 10)',
  PUBKEY_WAIT_SECONDS: 'wait for the public key before reporting ready (default 60)',
  REPORT_TICK_SECONDS: 'how often the reporter looks for news (default 1)',
  REPORT_IDLE_SECONDS: 'longest gap between two /worker_status/ reports (default 10)',
  REPORT_TIMEOUT_SECONDS: 'one report POST (default 10)',
  REPORT_RETRY_DELAY_SECONDS: 'pause after a failed report attempt (default 2)',
  ERROR_BEACON_INTERVAL_SECONDS: 'period of the failed-start-up error beacon (default 10)',
  READINESS:
    'what says the model is loaded: logs (a load line in MODEL_LOG), health or both (default logs)',
  READINESS_TIMEOUT: 'health and both: longest wait for the model to be loaded (default 300)',
  READINESS_GRACE_SECONDS:
    'logs: without a load line by then, a passing healthcheck counts (default 60)',
  READINESS_LOG_INTERVAL_SECONDS: 'period of the "still waiting for the model" line (default 60)',
  HEALTHCHECK_FAILURES:
    'failed (or passed) healthchecks in a row that error (or clear) a ready worker (default 3)',
};

/** `VAST_TCP_PORT_<WORKER_PORT>`, the one variable whose name depends on another's value. */
export const PUBLIC_PORT_VARIABLE_DOC: readonly [name: string, meaning: string] = [
  'VAST_TCP_PORT_<WORKER_PORT>',
  'public port in the reported URL (default WORKER_PORT)',
];

/** Values never echoed in an error message. */
const SECRET_VARIABLES = new Set(['MASTER_TOKEN', 'METRICS_TOKEN']);

/** Every problem with the environment, reported together. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    // One problem fits one line; several are listed, one a line.
    super(
      problems.length === 1
        ? `invalid configuration: ${problems[0]}`
        : `invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Splits REPORT_ADDR on commas, trims each entry and drops trailing slashes (fixes protocol §12.4). */
export function parseReportAddrs(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((entry) => trimTrailingSlashes(entry.trim()))
    .filter((entry) => entry !== '');
}

/** Reads and validates the environment. Throws one `ConfigError` listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const cleaned = withoutEmptyValues(env);
  const parsed = envSchema.safeParse(cleaned);
  const problems = parsed.success ? [] : schemaProblems(parsed.error.issues, cleaned);
  const reportAddrs = parseReportAddrs(cleaned['REPORT_ADDR']);
  problems.push(...reportingProblems(reportAddrs, cleaned));
  const workerPort = parsed.success ? parsed.data.WORKER_PORT : 3000;
  const publicPortRaw = cleaned[`VAST_TCP_PORT_${workerPort}`];
  const publicPort = port.safeParse(publicPortRaw ?? workerPort);
  if (!publicPort.success) {
    problems.push(
      `VAST_TCP_PORT_${workerPort}: ${withValue('must be a port number (0-65535)', '', publicPortRaw)}`,
    );
  }
  if (!parsed.success || problems.length > 0 || !publicPort.success)
    throw new ConfigError(problems);
  return resolveConfig(parsed.data, reportAddrs, publicPort.data);
}

type ParsedEnv = z.output<typeof envSchema>;

/** The set variables: an empty string counts as unset. */
function withoutEmptyValues(env: NodeJS.ProcessEnv): Record<string, string> {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') cleaned[key] = value;
  }
  return cleaned;
}

function schemaProblems(
  issues: readonly z.core.$ZodIssue[],
  cleaned: Record<string, string>,
): string[] {
  return issues.map((issue) => {
    const name = String(issue.path[0]);
    return `${issue.path.join('.')}: ${withValue(issue.message, name, cleaned[name])}`;
  });
}

/** REPORT_ADDR and the variables it needs, checked across variables (the schema sees one at a time). */
function reportingProblems(
  reportAddrs: readonly string[],
  cleaned: Record<string, string>,
): string[] {
  const problems: string[] = [];
  for (const addr of reportAddrs) {
    if (!URL.canParse(addr)) problems.push(`REPORT_ADDR: "${addr}" is not an absolute URL`);
  }
  if (reportAddrs.length > 0) {
    if (cleaned['CONTAINER_ID'] === undefined)
      problems.push('CONTAINER_ID: required when REPORT_ADDR is set');
    if (cleaned['PUBLIC_IPADDR'] === undefined)
      problems.push('PUBLIC_IPADDR: required when REPORT_ADDR is set');
  }
  // Judged on its own, so a bad WORKER_PORT does not hide a missing REPORT_ADDR.
  const unsecured = strtobool.safeParse(cleaned['UNSECURED'] ?? 'false');
  if (unsecured.success && !unsecured.data && reportAddrs.length === 0) {
    problems.push('REPORT_ADDR: required to fetch the public key unless UNSECURED=true');
  }
  return problems;
}

function resolveConfig(data: ParsedEnv, reportAddrs: string[], publicPort: number): ResolvedConfig {
  return Object.freeze({
    workerPort: data.WORKER_PORT,
    workerHttpPort: data.WORKER_HTTP_PORT ?? (data.WORKER_PORT === 0 ? 0 : data.WORKER_PORT + 1),
    workerHost: data.WORKER_HOST,
    reportAddrs: Object.freeze(reportAddrs),
    containerId: data.CONTAINER_ID ?? 0,
    publicIpAddr: data.PUBLIC_IPADDR ?? '127.0.0.1',
    publicPort,
    useSsl: data.USE_SSL,
    sslCertFile: data.SSL_CERT_FILE,
    sslKeyFile: data.SSL_KEY_FILE,
    unsecured: data.UNSECURED,
    masterToken: data.MASTER_TOKEN,
    metricsToken: data.METRICS_TOKEN,
    modelLog: data.MODEL_LOG,
    modelServerUrl:
      data.MODEL_SERVER_URL === undefined ? undefined : trimTrailingSlashes(data.MODEL_SERVER_URL),
    authMode: data.AUTH_MODE,
    assumedThroughput: data.ASSUMED_THROUGHPUT,
    maxConnections: data.MAX_CONNECTIONS,
    maxBodyBytes: data.MAX_BODY_BYTES,
    maxPendingDeletes: data.MAX_PENDING_DELETE_REQUESTS,
    headersTimeoutSeconds: data.HEADERS_TIMEOUT_SECONDS,
    requestTimeoutSeconds: data.REQUEST_TIMEOUT_SECONDS,
    refusedBodyLingerSeconds: data.REFUSED_BODY_LINGER_SECONDS,
    refusedBodyLingerBytes: data.REFUSED_BODY_LINGER_BYTES,
    maxConnectionsPerListener: data.MAX_CONNECTIONS_PER_LISTENER,
    benchmarkCacheFile: data.BENCHMARK_CACHE,
    terminationGracePeriodSeconds: data.TERMINATION_GRACE_PERIOD_SECONDS,
    logLevel: data.LOG_LEVEL,
    forceUpdateFile: data.FORCE_UPDATE_FILE,
    readiness: data.READINESS,
    healthcheckFailures: data.HEALTHCHECK_FAILURES,
    timings: resolveTimings(data),
  });
}

function resolveTimings(data: ParsedEnv): Timings {
  return Object.freeze({
    healthcheckInterval: data.HEALTHCHECK_INTERVAL_SECONDS,
    healthcheckTimeout: data.HEALTHCHECK_TIMEOUT_SECONDS ?? data.HEALTHCHECK_PROBE_TIMEOUT ?? 10,
    healthcheckReadyTimeout: data.HEALTHCHECK_READY_TIMEOUT_SECONDS,
    noHealthcheckWait: data.NO_HEALTHCHECK_WAIT_SECONDS,
    pubkeyWait: data.PUBKEY_WAIT_SECONDS,
    reportTick: data.REPORT_TICK_SECONDS,
    reportIdle: data.REPORT_IDLE_SECONDS,
    reportTimeout: data.REPORT_TIMEOUT_SECONDS,
    reportRetryDelay: data.REPORT_RETRY_DELAY_SECONDS,
    errorBeaconInterval: data.ERROR_BEACON_INTERVAL_SECONDS,
    readinessTimeout: data.READINESS_TIMEOUT,
    readinessGrace: data.READINESS_GRACE_SECONDS,
    readinessLogInterval: data.READINESS_LOG_INTERVAL_SECONDS,
  });
}

/** The message with the bad value echoed, unless it already shows it or the value is a secret. */
function withValue(message: string, name: string, raw: string | undefined): string {
  if (raw === undefined || SECRET_VARIABLES.has(name) || /\bgot "/.test(message)) return message;
  const shown = raw.length > 80 ? `${raw.slice(0, 77)}...` : raw;
  return `${message}, got ${JSON.stringify(shown)}`;
}

/** The URL the autoscaler is told to route clients to (protocol §8.2 `url`). */
export function publicUrl(config: ResolvedConfig): string {
  return `${config.useSsl ? 'https' : 'http'}://${config.publicIpAddr}:${config.publicPort}`;
}

let version: string | undefined;

/**
 * tsworker's version, from its package.json: the nearest one named "tsworker" above this file, so
 * that the sources, dist/ and an installed package all find it. Read on first use, then kept.
 */
export function tsworkerVersion(): string {
  if (version !== undefined) return version;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'tsworker' && typeof pkg.version === 'string')
        return (version = pkg.version);
    } catch {
      // No package.json here (dist/ has none): look one folder up.
    }
    const parent = dirname(dir);
    if (parent === dir) return (version = 'unknown');
    dir = parent;
  }
}
