import { writeSync } from 'node:fs';
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config.ts';

/** The structured logger every component receives. One JSON object per line. */
export type Logger = PinoLogger;

/** The component named on lines logged through a logger that has none of its own. */
export const ROOT_COMPONENT = 'worker';

/** Keys holding tokens: shown the way PyWorker shows an mtoken (protocol §11.61), never in full. */
const TOKEN_KEYS = ['mtoken', 'masterToken', 'MASTER_TOKEN'];
/** Keys whose values never reach the log at all. */
const SECRET_KEYS = ['signature', 'session_auth', 'authorization', 'Authorization'];

/**
 * Redaction paths: each key at the top level and one object down, plus the deeper shapes this
 * code base logs (`*.auth_data.signature`, `*.headers.authorization`). Spelled out rather than
 * wildcarded further: every `*.*` level makes redaction walk the whole logged object on every line,
 * which cost ~35 µs per request line.
 */
const REDACTED_PATHS = [
  ...[...TOKEN_KEYS, ...SECRET_KEYS].flatMap((key) => [key, `*.${key}`]),
  'auth_data.signature',
  '*.auth_data.signature',
  'headers.authorization',
  '*.headers.authorization',
];
const TOKEN_KEY_SET = new Set(TOKEN_KEYS);

function censorSecret(value: unknown, path: string[]): string {
  const key = path.at(-1) ?? '';
  return TOKEN_KEY_SET.has(key) && typeof value === 'string' ? maskToken(value) : '[masked]';
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Human-readable lines instead of JSON. @default stdout is a terminal */
  pretty?: boolean;
  /** Where lines go. @default stdout, through a `BufferedLogDestination` */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** How long a line may wait in the stdout buffer. @default 100 */
  flushIntervalMs?: number;
}

/** Batches of about this many UTF-16 code units are written at once (a pipe's buffer is 64 KiB). */
const FLUSH_LENGTH = 16_384;
/** Lines at these levels are written at once: the process may be about to die. */
const ERROR_LINE_START = '{"level":"error"';
const FATAL_LINE_START = '{"level":"fatal"';
/** Every buffered destination in the process, flushed by one `exit` listener. */
const liveDestinations = new Set<BufferedLogDestination>();

/**
 * Log lines for a file descriptor, written in batches: one `write(2)` for many lines instead of one
 * per line (the per-request line made that a syscall per request, and pino's asynchronous
 * destination a thread-pool round trip per write). A batch goes out when it reaches FLUSH_LENGTH,
 * `flushIntervalMs` after its first line, at once for an error or fatal line, and synchronously
 * when the process exits (`process.exit` included: the signal handlers' exits after a drain, a
 * second signal, a failed drain, an uncaught exception), so no line is lost but to SIGKILL.
 * Writes are synchronous, so nothing is in flight when the process exits.
 */
export class BufferedLogDestination {
  readonly #fd: number;
  readonly #flushIntervalMs: number;
  #lines: string[] = [];
  #length = 0;
  #timer: NodeJS.Timeout | undefined;
  #broken = false;

  constructor(fd: number, flushIntervalMs = 100) {
    this.#fd = fd;
    this.#flushIntervalMs = flushIntervalMs;
    if (liveDestinations.size === 0) process.on('exit', flushAllDestinations);
    liveDestinations.add(this);
  }

  write(line: string): boolean {
    if (this.#broken) return true;
    this.#lines.push(line);
    this.#length += line.length;
    if (
      this.#length >= FLUSH_LENGTH ||
      line.startsWith(ERROR_LINE_START) ||
      line.startsWith(FATAL_LINE_START)
    ) {
      this.flushSync();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flushSync(), this.#flushIntervalMs).unref();
    }
    return true;
  }

  /** pino's `logger.flush(callback)` lands here. */
  flush(callback?: (error?: Error) => void): void {
    this.flushSync();
    callback?.();
  }

  /** Writes every buffered line now. */
  flushSync(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#length === 0) return;
    const batch = Buffer.from(this.#lines.join(''));
    this.#lines = [];
    this.#length = 0;
    this.#broken = !writeFully(this.#fd, batch);
  }

  /** Flushes and stops listening for the exit (for a logger that is done with). */
  end(): void {
    this.flushSync();
    liveDestinations.delete(this);
    if (liveDestinations.size === 0) process.off('exit', flushAllDestinations);
  }
}

function flushAllDestinations(): void {
  for (const destination of liveDestinations) destination.flushSync();
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `bytes` to `fd`, waiting out EAGAIN (stdout may be a non-blocking pipe whose reader
 * is behind). False when the descriptor is gone (EPIPE, EBADF…): logging stops, as pino's does.
 */
function writeFully(fd: number, bytes: Buffer): boolean {
  for (let offset = 0; offset < bytes.length;) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return false;
      Atomics.wait(sleeper, 0, 0, 1);
    }
  }
  return true;
}

const NO_FIELDS = Object.freeze({});
const ROOT_COMPONENT_FIELDS = Object.freeze({ component: ROOT_COMPONENT });

let timeCachedAt = -1;
let cachedTimeField = '';
/** pino's `isoTime`, formatted once per millisecond: a busy worker logs several lines in one. */
function cachedIsoTime(): string {
  const now = Date.now();
  if (now !== timeCachedAt) {
    timeCachedAt = now;
    cachedTimeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return cachedTimeField;
}

// Whether a logger's bindings already name a component, computed once per logger instance.
const namesComponent = new WeakMap<object, boolean>();

/**
 * Creates the root logger. Every line carries `time` (ISO 8601), `level` (as a word), `component`
 * and `message`; request lines add `requestId`, `route`, `status`, `workload` and durations.
 * Child loggers set `component`; lines without one get `component: "worker"`. Tokens and
 * signatures are masked at the top level, one object down, and in `auth_data` and `headers`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const usePretty = options.pretty ?? process.stdout.isTTY === true;
  const destination = usePretty
    ? pretty({
        colorize: options.destination === undefined && process.stdout.isTTY === true,
        messageKey: 'message',
        ignore: 'pid,hostname',
        translateTime: 'SYS:HH:MM:ss.l',
        destination: options.destination ?? process.stdout,
        sync: true,
      })
    : (options.destination ?? new BufferedLogDestination(1, options.flushIntervalMs));
  return pino(
    {
      level: options.level ?? 'info',
      messageKey: 'message',
      base: null,
      timestamp: cachedIsoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: REDACTED_PATHS,
        censor: censorSecret,
      },
      mixin: (mergeObject, _level, logger) => {
        let named = namesComponent.get(logger);
        if (named === undefined) {
          named = 'component' in logger.bindings();
          namesComponent.set(logger, named);
        }
        return named || 'component' in mergeObject ? NO_FIELDS : ROOT_COMPONENT_FIELDS;
      },
      // pino's default merge assigns into the mixin's object; these are shared, so copy instead,
      // and not at all when there is nothing to add (every request line).
      mixinMergeStrategy: (mergeObject, mixinObject) =>
        mixinObject === NO_FIELDS ? mergeObject : { ...mixinObject, ...mergeObject },
    },
    destination,
  );
}

/**
 * A child logger for lines logged once per request: only top-level keys are redacted. Their
 * fields are known (ids, route, status, durations) and hold no secret, and wildcard redaction
 * would walk every line's object, several times the cost of writing it.
 */
export function requestLineLogger(logger: Logger, component: string): Logger {
  return logger.child(
    { component },
    { redact: { paths: [...TOKEN_KEYS, ...SECRET_KEYS], censor: censorSecret } },
  );
}

/** A logger that drops everything: the default for tests and embedded use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** PyWorker's mtoken mask for log lines: first 7 characters + "..." when long, else asterisks. */
export function maskToken(token: string | undefined): string {
  if (token === undefined) return '';
  return token.length > 12 ? `${token.slice(0, 7)}...` : '*'.repeat(token.length);
}
