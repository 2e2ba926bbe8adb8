/**
 * Follows the model server's log and reports the lines that match the worker's log actions
 * (protocol §6.1, §6.2), fixing the reference's tailer bugs (§12.14).
 *
 * A small poller of our own, on plain file descriptors:
 * - every `pollMs` (and sooner when an fs.watch on the log's directory says something changed) it
 *   reads from its byte offset to the end of the file, in chunks of {@link READ_CHUNK_BYTES};
 * - at the end of the file it stats the path: another file there (a new inode: rename or
 *   delete-then-recreate) is read from its start once the old one is read to its end; the same
 *   file, now shorter than the offset (copy-truncate), is read again from its start; no file is
 *   waited for, still reading what is written to the old one (it stays open, so its inode cannot
 *   be reused meanwhile);
 * - lines end at `\n`, `\r\n` or a bare `\r` (progress bars); a line is cut to its first
 *   {@link MAX_LOG_LINE_BYTES} bytes, the rest is skipped up to the next line end, and bytes that
 *   are not UTF-8 become U+FFFD. The work per byte is constant, and the event loop runs between
 *   chunks (each read is an asynchronous I/O turn), so a huge line neither blinds nor stalls it.
 *
 * Polling alone is correct everywhere (overlay and network filesystems included); fs.watch only
 * shortens the delay and may fail (inotify limits) without consequence.
 */
import fs from 'node:fs';
import { basename, dirname } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { LogAction } from '../worker.ts';

export interface LogMatch {
  action: LogAction;
  /** The configured substring that matched. */
  pattern: string;
  /** The line (at most its first {@link MAX_LOG_LINE_BYTES} bytes), trailing whitespace stripped. */
  line: string;
}

/**
 * `long-line` is reported once per watcher, for the first line longer than
 * {@link MAX_LOG_LINE_BYTES}; `LogWatcher.linesCut` counts them all.
 */
export type LogWatcherEventKind =
  'waiting' | 'opened' | 'rotated' | 'truncated' | 'long-line' | 'error';

export interface LogWatcherOptions {
  path: string;
  /** (action, substring) pairs, walked in order for every line (`ResolvedWorker.logActions`). */
  actions: readonly (readonly [LogAction, string])[];
  /** Called synchronously per matching line; must never be blocked by readiness work. */
  onMatch: (match: LogMatch) => void;
  /** For logging. */
  onEvent?: (event: { kind: LogWatcherEventKind; detail?: string }) => void;
  /**
   * How often to check the file for new content, replacement or truncation, and for its
   * existence while it does not exist. fs.watch wakes the watcher sooner where it works.
   * @default 100
   */
  pollMs?: number;
}

export interface LogWatcher {
  /** Stops following; resolves once the timer, the watcher and the file descriptor are closed. */
  stop(): Promise<void>;
  /** Complete lines handled so far, matched or not. */
  readonly linesRead: number;
  /** Lines longer than {@link MAX_LOG_LINE_BYTES}, matched on their first part only. */
  readonly linesCut: number;
}

/**
 * The longest line matched, in bytes: longer lines (JSON dumps, huge reprs in tracebacks) are
 * matched on their first 64 KiB, and the rest, up to the next line end, is skipped unread.
 */
export const MAX_LOG_LINE_BYTES = 64 * 1024;

/** Bytes read per `read()`: bounds the synchronous work done between two event-loop turns. */
export const READ_CHUNK_BYTES = 64 * 1024;

const RETRY_AFTER_ERROR_MS = 1000;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Starts watching `options.path` and returns at once. Never throws from its own callbacks:
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
  let linesCut = 0;

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
      report('error', `onMatch threw: ${errorMessage(error)}`);
    }
  };

  // §6.2, minus the reference's bugs: one ModelLoaded per line however many on_load patterns
  // match, and the error carries the full line.
  const handleLine = (raw: string): void => {
    // onMatch may stop the watcher; the rest of the chunk is then never reported.
    if (signal.aborted) return;
    linesRead += 1;
    const line = raw.trimEnd();
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

  const handleCut = (): void => {
    linesCut += 1;
    if (linesCut > 1) return;
    report(
      'long-line',
      `a line in ${path} is longer than ${MAX_LOG_LINE_BYTES} bytes: matching its first ` +
        `${MAX_LOG_LINE_BYTES} bytes and skipping the rest (reported once; later ones are cut silently)`,
    );
  };

  const wake = new Wake();
  const directory = new DirectoryWatch(path, () => wake.notify(), report);
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);

  /** Reads `cursor`'s file from its offset to its current end. False if stopped meanwhile. */
  const drain = async (fd: number, cursor: Cursor): Promise<boolean> => {
    for (;;) {
      if (signal.aborted) return false;
      // Awaiting the read lets timers and sockets run between two chunks.
      const bytes = await read(fd, buffer, cursor.offset);
      if (signal.aborted) return false;
      if (bytes === 0) return true;
      cursor.offset += bytes;
      cursor.lines.push(buffer.subarray(0, bytes));
    }
  };

  /**
   * Follows one open file until another file takes its path (returns true) or the watcher is
   * stopped (false). Truncation restarts `cursor` in place. Read and stat errors propagate.
   */
  const follow = async (fd: number, cursor: Cursor): Promise<boolean> => {
    let gone = false;
    for (;;) {
      if (!(await drain(fd, cursor))) return false;
      const now = await statOrUndefined(path);
      if (signal.aborted) return false;
      if (now === undefined || !now.isFile()) {
        if (!gone) {
          report('waiting', `${path} was removed; waiting for a new one`);
          gone = true;
        }
      } else if (!cursor.isSameFile(now)) {
        // Lines written to the old file just before the switch come first.
        if (!(await drain(fd, cursor))) return false;
        return true;
      } else {
        if (gone) report('opened', path);
        gone = false;
        if (now.size < cursor.offset) {
          report('truncated', `${path} shrank; reading it again from its start`);
          cursor.restart();
          continue;
        }
      }
      await wake.wait(pollMs, signal);
    }
  };

  /**
   * Opens the log if it is a regular file, or says why not. A path that is not a regular file is
   * never opened: opening a FIFO would block a libuv thread until something writes to it.
   */
  const openLog = async (): Promise<{ fd: number; stats: fs.Stats } | string> => {
    const notAFile = `${path} is not a regular file; waiting for one`;
    const found = await statOrUndefined(path);
    if (found === undefined) return `waiting for ${path} to exist`;
    if (!found.isFile()) return notAFile;
    let fd: number;
    try {
      fd = await openFile(path);
    } catch (error) {
      if (isMissing(error)) return `waiting for ${path} to exist`;
      throw error;
    }
    try {
      // The file opened, which may have replaced the one just found.
      const stats = await fstat(fd);
      if (stats.isFile()) return { fd, stats };
    } catch (error) {
      await close(fd);
      throw error;
    }
    await close(fd);
    return notAFile;
  };

  const supervise = async (): Promise<void> => {
    let cursor: Cursor | undefined;
    /** Why the file is not open, reported once until it changes or the file opens. */
    let waiting: string | undefined;
    /** The last failure to open, reported once until it changes or the file opens. */
    let openFailure: string | undefined;
    while (!signal.aborted) {
      let opened: Awaited<ReturnType<typeof openLog>>;
      try {
        opened = await openLog();
      } catch (error) {
        const detail = `opening ${path} failed: ${errorMessage(error)}`;
        if (detail !== openFailure) report('error', detail);
        openFailure = detail;
        await wake.wait(Math.max(pollMs, RETRY_AFTER_ERROR_MS), signal);
        continue;
      }
      openFailure = undefined;
      if (typeof opened === 'string') {
        if (opened !== waiting) report('waiting', opened);
        waiting = opened;
        await wake.wait(pollMs, signal);
        continue;
      }
      waiting = undefined;
      const { fd, stats } = opened;
      try {
        if (cursor === undefined) {
          cursor = new Cursor(stats, handleLine, handleCut);
        } else if (!cursor.isSameFile(stats)) {
          report('rotated', `${path} was replaced; reading the new file from its start`);
          cursor = new Cursor(stats, handleLine, handleCut);
        } else if (stats.size < cursor.offset) {
          report('truncated', `${path} shrank; reading it again from its start`);
          cursor.restart();
        }
        // Otherwise the same file, reopened after an error: carry on where reading stopped.
        report('opened', path);
        directory.ensure();
        if (!(await follow(fd, cursor))) return;
      } catch (error) {
        if (signal.aborted) return;
        report('error', `tailing ${path} failed: ${errorMessage(error)}`);
        // The file may be gone or unreadable: start over without spinning, resuming `cursor`
        // if the same file is found again.
        await wake.wait(Math.max(pollMs, RETRY_AFTER_ERROR_MS), signal);
      } finally {
        await close(fd);
      }
    }
  };

  const running = supervise()
    .catch((error: unknown) => {
      report('error', `log watcher stopped: ${errorMessage(error)}`);
    })
    .finally(async () => {
      if (directory.close()) {
        // libuv runs close callbacks after the check phase, so the watcher handle is only gone
        // after a second setImmediate turn.
        await nextTurn();
        await nextTurn();
      }
    });

  return {
    async stop() {
      abort.abort();
      await running;
    },
    get linesRead() {
      return linesRead;
    },
    get linesCut() {
      return linesCut;
    },
  };
}

/** One file being read: its identity, the byte offset reached and the line being assembled. */
class Cursor {
  readonly #dev: number;
  readonly #ino: number;
  readonly #onLine: (line: string) => void;
  readonly #onCut: () => void;
  offset = 0;
  lines: LineSplitter;

  constructor(stats: fs.Stats, onLine: (line: string) => void, onCut: () => void) {
    this.#dev = stats.dev;
    this.#ino = stats.ino;
    this.#onLine = onLine;
    this.#onCut = onCut;
    this.lines = new LineSplitter(MAX_LOG_LINE_BYTES, onLine, onCut);
  }

  isSameFile(stats: fs.Stats): boolean {
    return stats.dev === this.#dev && stats.ino === this.#ino;
  }

  /** From the start again: a half-assembled line of the old content is dropped. */
  restart(): void {
    this.offset = 0;
    this.lines = new LineSplitter(MAX_LOG_LINE_BYTES, this.#onLine, this.#onCut);
  }
}

/**
 * Splits bytes into lines ending at `\n`, `\r\n` or `\r`, keeping at most `maxBytes` of each.
 * Every byte is looked at a constant number of times, whatever the line lengths.
 */
class LineSplitter {
  readonly #maxBytes: number;
  readonly #onLine: (line: string) => void;
  readonly #onCut: () => void;
  /** Copies of the kept bytes of the line being assembled (input chunks are reused). */
  #parts: Buffer[] = [];
  #kept = 0;
  /** The line reached `maxBytes`: its further bytes are skipped. */
  #full = false;
  /** The previous chunk ended with `\r`: a `\n` opening this one belongs to it. */
  #afterCr = false;

  constructor(maxBytes: number, onLine: (line: string) => void, onCut: () => void) {
    this.#maxBytes = maxBytes;
    this.#onLine = onLine;
    this.#onCut = onCut;
  }

  push(chunk: Buffer): void {
    let start = 0;
    if (this.#afterCr && chunk.length > 0) {
      this.#afterCr = false;
      if (chunk[0] === LF) start = 1;
    }
    // The next `\n` and `\r`, each searched again only once passed: linear in the chunk.
    let lf = chunk.indexOf(LF, start);
    let cr = chunk.indexOf(CR, start);
    while (start < chunk.length) {
      if (lf !== -1 && lf < start) lf = chunk.indexOf(LF, start);
      if (cr !== -1 && cr < start) cr = chunk.indexOf(CR, start);
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) {
        this.#keep(chunk, start, chunk.length);
        return;
      }
      this.#endLine(chunk, start, end);
      start = end + 1;
      if (end === cr) {
        if (end + 1 === chunk.length) this.#afterCr = true;
        else if (chunk[end + 1] === LF) start = end + 2;
      }
    }
  }

  #keep(chunk: Buffer, from: number, to: number): void {
    if (this.#full || from === to) return;
    const take = Math.min(to - from, this.#maxBytes - this.#kept);
    if (take < to - from) {
      this.#full = true;
      this.#onCut();
    }
    if (take > 0) {
      this.#parts.push(Buffer.from(chunk.subarray(from, from + take)));
      this.#kept += take;
    }
  }

  #endLine(chunk: Buffer, from: number, to: number): void {
    let line: string;
    if (this.#parts.length === 0 && !this.#full && to - from <= this.#maxBytes) {
      // The common case: the whole line is in this chunk.
      line = chunk.toString('utf8', from, to);
    } else {
      this.#keep(chunk, from, to);
      const kept = Buffer.concat(this.#parts, this.#kept);
      line = (this.#full ? withoutCutCharacter(kept) : kept).toString('utf8');
      this.#parts = [];
      this.#kept = 0;
      this.#full = false;
    }
    this.#onLine(line);
  }
}

/** `bytes` without a last UTF-8 character that the cap cut short (it would decode as U+FFFD). */
function withoutCutCharacter(bytes: Buffer): Buffer {
  for (let back = 1; back <= Math.min(4, bytes.length); back += 1) {
    const byte = bytes[bytes.length - back] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.subarray(0, bytes.length - back) : bytes;
  }
  return bytes;
}

/** Resolves after `ms`, at once on `notify()` (also one that came since the last wait) or abort. */
class Wake {
  #notified = false;
  #resolve: (() => void) | undefined;

  notify(): void {
    if (this.#resolve === undefined) this.#notified = true;
    else this.#resolve();
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    if (this.#notified) {
      this.#notified = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#resolve = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
      this.#resolve = done;
    });
  }
}

/**
 * fs.watch on the log's directory (it sees the file being written, renamed, deleted and created),
 * only to read sooner than the next poll. Failing to watch is reported and polling carries on.
 */
class DirectoryWatch {
  readonly #directory: string;
  readonly #name: string;
  readonly #onChange: () => void;
  readonly #report: (kind: LogWatcherEventKind, detail?: string) => void;
  #watcher: fs.FSWatcher | undefined;
  #closed = false;

  constructor(
    path: string,
    onChange: () => void,
    report: (kind: LogWatcherEventKind, detail?: string) => void,
  ) {
    this.#directory = dirname(path);
    this.#name = basename(path);
    this.#onChange = onChange;
    this.#report = report;
  }

  /** Starts watching unless already watching; called whenever a log file is opened. */
  ensure(): void {
    if (this.#watcher !== undefined || this.#closed) return;
    try {
      const watcher = fs.watch(this.#directory, { persistent: false }, (_type, name) => {
        if (name === null || name === this.#name) this.#onChange();
      });
      watcher.on('error', (error: unknown) => {
        this.#report('error', `watching ${this.#directory} failed: ${errorMessage(error)}`);
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
    } catch (error) {
      // ENOSPC or EMFILE when inotify limits are hit: polling alone still follows the file.
      this.#report(
        'error',
        `watching ${this.#directory} failed: ${errorMessage(error)}; polling only`,
      );
    }
  }

  /** Closes the watcher for good; true if there was one open. */
  close(): boolean {
    this.#closed = true;
    const watcher = this.#watcher;
    this.#watcher = undefined;
    watcher?.close();
    return watcher !== undefined;
  }
}

// Plain callback fs calls, looked up on the `fs` object at each call.

function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open(path, 'r', (error, fd) => (error ? reject(error) : resolve(fd)));
  });
}

function fstat(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, (error, stats) => (error ? reject(error) : resolve(stats)));
  });
}

function statOrUndefined(path: string): Promise<fs.Stats | undefined> {
  return new Promise((resolve, reject) => {
    fs.stat(path, (error, stats) => {
      if (error === null) resolve(stats);
      else if (isMissing(error)) resolve(undefined);
      else reject(error);
    });
  });
}

function read(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, 0, buffer.length, position, (error, bytesRead) =>
      error ? reject(error) : resolve(bytesRead),
    );
  });
}

function close(fd: number | undefined): Promise<void> {
  if (fd === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    // A failed close leaves nothing to do: the descriptor is released either way.
    fs.close(fd, () => resolve());
  });
}

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
