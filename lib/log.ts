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
  /** Where lines go. @default stdout */
  destination?: DestinationStream | NodeJS.WritableStream;
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
    : (options.destination ?? pino.destination({ sync: false }));
  return pino(
    {
      level: options.level ?? 'info',
      messageKey: 'message',
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
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
        return named || 'component' in mergeObject ? {} : { component: ROOT_COMPONENT };
      },
    },
    destination,
  );
}

/**
 * A child logger for lines logged once per request: only top-level keys are redacted. Their
 * fields are known (ids, route, status, durations) and hold no secret, and wildcard redaction
 * would walk every line's object, several times the cost of writing it.
 */
export function hotPathLogger(logger: Logger, component: string): Logger {
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
