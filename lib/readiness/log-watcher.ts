/**
 * Tails the model server's log and reports the lines that match the worker's log actions
 * (protocol §6.1, §6.2), fixing the reference's tailer bugs (§12.14).
 *
 * Tailing is done by `tail-file` (fs.watch on the directory, inode/size checks at end of file).
 * Its internals are used on purpose and with care: the README documents them as public
 * ("All internals are exposed in the object"), and several of its edge cases (see `GuardedTail`)
 * would otherwise leak handles, hang `stop()` or crash the process.
 */
import type { FSWatcher, Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { LogAction } from '../worker.ts';

export interface LogMatch {
  action: LogAction;
  /** The configured substring that matched. */
  pattern: string;
  /** The whole line, trailing whitespace stripped. */
  line: string;
}

export type LogWatcherEventKind = 'waiting' | 'opened' | 'rotated' | 'truncated' | 'error';

export interface LogWatcherOptions {
  path: string;
  /** (action, substring) pairs, walked in order for every line (`ResolvedWorker.logActions`). */
  actions: readonly (readonly [LogAction, string])[];
  /** Called synchronously per matching line; must never be blocked by readiness work. */
  onMatch: (match: LogMatch) => void;
  /** For logging. */
  onEvent?: (event: { kind: LogWatcherEventKind; detail?: string }) => void;
  /**
   * How often to check for the file while it does not exist, and to re-read it in case fs.watch
   * misses events (network or overlay filesystems). @default 100
   */
  pollMs?: number;
}

export interface LogWatcher {
  /** Stops tailing; resolves once the timers and the watcher/file handles are closed. */
  stop(): Promise<void>;
  /** Complete lines handled so far, matched or not. */
  readonly linesRead: number;
}

/** The parts of tail-file's untyped CommonJS `Tail` class used here (see its tail.js). */
interface TailInstance extends EventEmitter {
  start(filename?: string): void;
  stop(): Promise<boolean>;
  startTail(filename: string): void;
  onError(error: unknown): void;
  interrupt(): void;
  readStuff(): void;
  /** The file currently tailed, or null. */
  started: string | null;
  /** Set while `start()` is opening a file; `stop()` waits for it to clear. */
  starting: string | null | undefined;
  stopping: string | null | undefined;
  fd: number | 'init' | null | undefined;
  ino: number | null;
  reading: boolean;
  watcher: FSWatcher | null | undefined;
}

interface TailOptions {
  startPos: 'start' | 'end' | number;
  secondary: string;
  sep: string;
  encoding: BufferEncoding;
  cutoff: number;
  force: boolean;
}

type TailClass = new (filename: string, options?: Partial<TailOptions>) => TailInstance;

const require = createRequire(import.meta.url);
const TailBase = require('tail-file') as TailClass;

/**
 * A Tail that can be switched off for good. tail-file restarts itself from async callbacks
 * (an in-flight end-of-file stat that sees a new inode or a truncation calls `start()`), so a
 * plain `stop()` can be followed by a fresh fs.watch handle that nobody closes.
 */
class GuardedTail extends TailBase {
  halted = false;

  override start(filename?: string): void {
    // `interrupt()` clears `starting` and emits the event a pending `stop()` waits for.
    if (this.halted) return this.interrupt();
    super.start(filename);
  }

  override startTail(filename: string): void {
    if (this.halted) return this.interrupt();
    try {
      super.startTail(filename);
    } catch (error) {
      // fs.watch throws synchronously (ENOSPC/EMFILE when inotify limits are hit); tail-file calls
      // this inside a promise callback, so the throw would become an unhandled rejection.
      this.onError(error);
    }
  }
}

/** Where reading stopped in one file, to resume there after an error instead of re-reading it. */
interface Position {
  ino: number | undefined;
  /** Characters consumed: tail-file's numeric `startPos` counts characters, not bytes. */
  chars: number;
  bytes: number;
}

const RETRY_AFTER_ERROR_MS = 1000;

/**
 * Starts watching `options.path` and returns at once. Never throws from tail-file's callbacks:
 * exceptions in `onMatch` are reported through `onEvent({ kind: 'error' })`.
 *
 * @example
 * const watcher = watchModelLog({
 *   path: '/var/log/model.log',
 *   actions: worker.logActions,
 *   onMatch: ({ action, line }) => readiness.onLogMatch(action, line),
 * });
 * await watcher.stop();
 */
export function watchModelLog(options: LogWatcherOptions): LogWatcher {
  const { path, actions, onMatch, onEvent } = options;
  const pollMs = options.pollMs ?? 100;
  const abort = new AbortController();
  const { signal } = abort;
  let linesRead = 0;
  let saved: Position | undefined;

  const report = (kind: LogWatcherEventKind, detail?: string): void => {
    if (onEvent === undefined) return;
    try {
      onEvent(detail === undefined ? { kind } : { kind, detail });
    } catch {
      // A failing logger must not break tailing, and there is nowhere left to report it.
    }
  };

  const fire = (action: LogAction, pattern: string, line: string): void => {
    try {
      onMatch({ action, pattern, line });
    } catch (error) {
      report('error', `onMatch threw: ${describe(error)}`);
    }
  };

  // §6.2, minus the reference's bugs: one ModelLoaded per line however many on_load patterns
  // match, and the error carries the full line.
  const handleLine = (line: string): void => {
    linesRead += 1;
    let loaded = false;
    let info = false;
    for (const [action, pattern] of actions) {
      if (!line.includes(pattern)) continue;
      if (action === LogAction.ModelLoaded) {
        if (!loaded) fire(action, pattern, line);
        loaded = true;
      } else if (action === LogAction.ModelError) {
        fire(action, pattern, line);
        break;
      } else {
        if (!info) fire(action, pattern, line);
        info = true;
      }
    }
  };

  /** Tails one opened file until tail-file reports an error (returned) or `stop()` is called. */
  const runTail = async (stats: Stats): Promise<unknown> => {
    const resume =
      saved !== undefined && saved.ino === stats.ino && stats.size >= saved.bytes
        ? saved
        : undefined;
    let position: Position = resume ? { ...resume } : { ino: stats.ino, chars: 0, bytes: 0 };
    let failure: { error: unknown } | undefined;

    const tail = new GuardedTail(path, {
      // From the start, as the reference does: lines already written are processed, so
      // start_server.sh truncates the log before launching the model (§6.1). The alternative,
      // starting at the end, would miss a load line printed before the worker came up.
      startPos: resume?.chars ?? 'start',
      // Never fall back to `${path}.1` (tail-file's default secondary): a stale rotated log would
      // replay an old "loaded" line. A path below the log file itself can never be opened.
      secondary: join(path, 'no-secondary'),
      sep: '\n',
      encoding: 'utf8',
      cutoff: 0,
      force: false,
    });

    tail.on('line', (raw: string) => {
      if (tail.halted) return;
      position.chars += raw.length + 1;
      position.bytes += Buffer.byteLength(raw) + 1;
      handleLine(raw.trimEnd());
    });
    tail.on('ready', () => {
      if (tail.halted) return;
      position.ino = tail.ino ?? undefined;
      report('opened', path);
    });
    tail.on('restart', (reason: string) => {
      if (tail.halted) return;
      // Every restart reads the (new or truncated) file from its beginning.
      position = { ino: undefined, chars: 0, bytes: 0 };
      if (reason === 'NEWPRIME') report('rotated', `${path} was replaced; reading the new file`);
      else if (reason === 'TRUNCATE') report('truncated', `${path} shrank; reading it again`);
    });
    const failed = new AbortController();
    // Must stay attached even when halted: tail-file throws errors that have no listener.
    tail.on('error', (error: unknown) => {
      if (tail.halted) return;
      // Halt at once: tail-file's still-open directory watcher would otherwise restart it from
      // offset 0 on the next change (PRIMEFOUND) and replay lines already reported.
      tail.halted = true;
      failure = { error };
      failed.abort();
    });

    tail.start();
    const awake = AbortSignal.any([signal, failed.signal]);
    while (await pause(pollMs, awake)) {
      // Fallback for filesystems where fs.watch misses writes: behave as if the watcher fired.
      // tail-file does the same from its own watcher callback, so this adds no new state.
      if (
        !tail.halted &&
        tail.started !== null &&
        typeof tail.fd === 'number' &&
        !tail.reading &&
        !tail.starting &&
        !tail.stopping
      ) {
        tail.readStuff();
      }
    }

    saved = position.ino === undefined ? undefined : { ...position };
    await shutDown(tail);
    return failure?.error;
  };

  const supervise = async (): Promise<void> => {
    let waiting = false;
    while (!signal.aborted) {
      const stats = await stat(path).catch(() => undefined);
      if (signal.aborted) return;
      if (stats === undefined || !stats.isFile()) {
        if (!waiting) report('waiting', `waiting for ${path} to exist`);
        waiting = true;
        await pause(pollMs, signal);
        continue;
      }
      waiting = false;
      const error = await runTail(stats);
      if (error !== undefined) {
        report('error', `tailing ${path} failed: ${describe(error)}`);
        // The file may be gone (ENOENT mid-rotation) or unreadable: start over, without spinning.
        await pause(Math.max(pollMs, RETRY_AFTER_ERROR_MS), signal);
      }
    }
  };

  const running = supervise().catch((error: unknown) => {
    report('error', `log watcher stopped: ${describe(error)}`);
  });

  return {
    async stop() {
      abort.abort();
      await running;
    },
    get linesRead() {
      return linesRead;
    },
  };
}

/** Switches a tail off for good and closes its watcher and file descriptor. */
async function shutDown(tail: GuardedTail): Promise<void> {
  tail.halted = true;
  // tail-file's stop() waits for a 'close' event from its watcher, which never comes if the
  // watcher already closed itself on an error, and waits for `starting` to clear, which some of
  // its error paths never do. Close the watcher here (idempotent) and drop `starting`.
  const watcher = tail.watcher;
  tail.watcher = undefined;
  watcher?.close();
  tail.starting = null;
  try {
    await tail.stop();
  } catch {
    // Only the watcher's close can reject, and it is already closed.
  }
  // libuv runs close callbacks after the check phase, so the watcher handle is only gone after
  // a second setImmediate turn.
  await nextTurn();
  await nextTurn();
}

/** Sleeps; false if `signal` aborted first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
