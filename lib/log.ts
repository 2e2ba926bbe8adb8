import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config.ts';

/** The structured logger every component receives. One JSON object per line. */
export type Logger = PinoLogger;

/** Keys whose values never reach the log (tokens and signatures). */
const REDACTED_PATHS = [
  'mtoken',
  '*.mtoken',
  'signature',
  '*.signature',
  '*.*.signature',
  'authorization',
  '*.authorization',
  'headers.authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Human-readable lines instead of JSON. @default stdout is a terminal */
  pretty?: boolean;
  /** Where lines go. @default stdout */
  destination?: DestinationStream | NodeJS.WritableStream;
}

/**
 * Creates the root logger: `time`, `level` (as a word), `component`, `message`, plus request
 * fields on request lines. Child loggers add `component`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const usePretty = options.pretty ?? process.stdout.isTTY === true;
  const destination = usePretty
    ? pretty({
        colorize: process.stdout.isTTY === true,
        messageKey: 'message',
        ignore: 'pid,hostname',
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
      redact: { paths: REDACTED_PATHS, censor: '[masked]' },
    },
    destination,
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
