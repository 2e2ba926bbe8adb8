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
import { delay } from '../internal/timers.ts';
import { errorMessage } from '../internal/values.ts';
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
  return new ModelLogWatcher(options);
}

/** A regular file opened for reading, with what `fstat` said of it. */
interface OpenLog {
  readonly fd: number;
  readonly stats: fs.Stats;
}

class ModelLogWatcher implements LogWatcher {
  readonly #path: string;
  readonly #actions: LogWatcherOptions['actions'];
  readonly #onMatch: LogWatcherOptions['onMatch'];
  readonly #onEvent: LogWatcherOptions['onEvent'];
  readonly #pollMs: number;
  readonly #retryMs: number;
  readonly #abort = new AbortController();
  readonly #wake: Wake;
  readonly #directory: DirectoryWatch;
  readonly #buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  readonly #running: Promise<void>;
  #linesRead = 0;
  #linesCut = 0;
  /** The file being read, kept across errors so the same file is resumed where reading stopped. */
  #cursor: Cursor | undefined;
  /** Why the file is not open, reported once until it changes or the file opens. */
  #waiting: string | undefined;
  /** The last failure to open, reported once until it changes or the file opens. */
  #openFailure: string | undefined;

  constructor(options: LogWatcherOptions) {
    this.#path = options.path;
    this.#actions = options.actions;
    this.#onMatch = options.onMatch;
    this.#onEvent = options.onEvent;
    this.#pollMs = options.pollMs ?? 100;
    this.#retryMs = Math.max(this.#pollMs, RETRY_AFTER_ERROR_MS);
    this.#wake = new Wake(this.#abort.signal);
    this.#directory = new DirectoryWatch(
      this.#path,
      () => this.#wake.notify(),
      (kind, detail) => this.#report(kind, detail),
    );
    this.#running = this.#run();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  get linesRead(): number {
    return this.#linesRead;
  }

  get linesCut(): number {
    return this.#linesCut;
  }

  get #stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  async #run(): Promise<void> {
    try {
      await this.#supervise();
    } catch (error) {
      this.#report('error', `log watcher stopped: ${errorMessage(error)}`);
    } finally {
      if (this.#directory.close()) {
        // libuv runs close callbacks after the check phase, so the watcher handle is only gone
        // after a second setImmediate turn.
        await nextTurn();
        await nextTurn();
      }
    }
  }

  /** Opens the log and follows it, starting over after a replacement or an error, until stopped. */
  async #supervise(): Promise<void> {
    while (!this.#stopped) {
      const opened = await this.#openOrWait();
      if (opened === undefined) continue;
      const { fd, stats } = opened;
      try {
        const cursor = this.#cursorFor(stats);
        this.#report('opened', this.#path);
        this.#directory.ensure();
        if (!(await this.#follow(fd, cursor))) return;
      } catch (error) {
        if (this.#stopped) return;
        this.#report('error', `tailing ${this.#path} failed: ${errorMessage(error)}`);
        // The file may be gone or unreadable: start over without spinning, resuming the cursor
        // if the same file is found again.
        await this.#wake.wait(this.#retryMs);
      } finally {
        await close(fd);
      }
    }
  }

  /** The open log, or undefined once the wait for it (or after failing to open it) is over. */
  async #openOrWait(): Promise<OpenLog | undefined> {
    let opened: OpenLog | string;
    try {
      opened = await openRegularFile(this.#path);
    } catch (error) {
      const detail = `opening ${this.#path} failed: ${errorMessage(error)}`;
      if (detail !== this.#openFailure) this.#report('error', detail);
      this.#openFailure = detail;
      await this.#wake.wait(this.#retryMs);
      return undefined;
    }
    this.#openFailure = undefined;
    if (typeof opened === 'string') {
      if (opened !== this.#waiting) this.#report('waiting', opened);
      this.#waiting = opened;
      await this.#wake.wait(this.#pollMs);
      return undefined;
    }
    this.#waiting = undefined;
    return opened;
  }

  /** Where to read the file just opened from: where reading stopped, if it is the same file. */
  #cursorFor(stats: fs.Stats): Cursor {
    const cursor = this.#cursor;
    if (cursor?.isSameFile(stats) === true) {
      if (stats.size < cursor.offset) {
        this.#report('truncated', `${this.#path} shrank; reading it again from its start`);
        cursor.restart();
      }
      return cursor;
    }
    if (cursor !== undefined) {
      this.#report('rotated', `${this.#path} was replaced; reading the new file from its start`);
    }
    const fresh = new Cursor(
      stats,
      (line) => this.#handleLine(line),
      () => this.#handleCut(),
    );
    this.#cursor = fresh;
    return fresh;
  }

  /**
   * Follows one open file until another file takes its path (returns true) or the watcher is
   * stopped (false). Truncation restarts `cursor` in place. Read and stat errors propagate.
   */
  async #follow(fd: number, cursor: Cursor): Promise<boolean> {
    const path = this.#path;
    let gone = false;
    for (;;) {
      if (!(await this.#drain(fd, cursor))) return false;
      const now = await statOrUndefined(path);
      if (this.#stopped) return false;
      if (now === undefined || !now.isFile()) {
        if (!gone) this.#report('waiting', `${path} was removed; waiting for a new one`);
        gone = true;
      } else if (!cursor.isSameFile(now)) {
        // Lines written to the old file just before the switch come first.
        return this.#drain(fd, cursor);
      } else {
        if (gone) this.#report('opened', path);
        gone = false;
        if (now.size < cursor.offset) {
          this.#report('truncated', `${path} shrank; reading it again from its start`);
          cursor.restart();
          continue;
        }
      }
      await this.#wake.wait(this.#pollMs);
    }
  }

  /** Reads `cursor`'s file from its offset to its current end. False if stopped meanwhile. */
  async #drain(fd: number, cursor: Cursor): Promise<boolean> {
    for (;;) {
      if (this.#stopped) return false;
      // Awaiting the read lets timers and sockets run between two chunks.
      const bytes = await read(fd, this.#buffer, cursor.offset);
      if (this.#stopped) return false;
      if (bytes === 0) return true;
      cursor.offset += bytes;
      cursor.lines.push(this.#buffer.subarray(0, bytes));
    }
  }

  // §6.2, minus the reference's bugs: one ModelLoaded per line however many on_load patterns
  // match, and the error carries the full line.
  #handleLine(raw: string): void {
    // onMatch may stop the watcher; the rest of the chunk is then never reported.
    if (this.#stopped) return;
    this.#linesRead += 1;
    const line = raw.trimEnd();
    let loaded = false;
    let info = false;
    for (const [action, pattern] of this.#actions) {
      if (!line.includes(pattern)) continue;
      if (action === LogAction.ModelLoaded) {
        if (!loaded) this.#fire(action, pattern, line);
        loaded = true;
      } else if (action === LogAction.ModelError) {
        this.#fire(action, pattern, line);
        break;
      } else {
        if (!info) this.#fire(action, pattern, line);
        info = true;
      }
    }
  }

  #handleCut(): void {
    this.#linesCut += 1;
    if (this.#linesCut > 1) return;
    this.#report(
      'long-line',
      `a line in ${this.#path} is longer than ${MAX_LOG_LINE_BYTES} bytes: matching its first ` +
        `${MAX_LOG_LINE_BYTES} bytes and skipping the rest (reported once; later ones are cut silently)`,
    );
  }

  #fire(action: LogAction, pattern: string, line: string): void {
    try {
      this.#onMatch({ action, pattern, line });
    } catch (error) {
      this.#report('error', `onMatch threw: ${errorMessage(error)}`);
    }
  }

  #report(kind: LogWatcherEventKind, detail?: string): void {
    if (this.#onEvent === undefined) return;
    try {
      this.#onEvent(detail === undefined ? { kind } : { kind, detail });
    } catch {
      // A failing logger must not break tailing, and there is nowhere left to report it.
    }
  }
}

/**
 * Opens `path` if it is a regular file, or says why not. A path that is not a regular file is
 * never opened: opening a FIFO would block a libuv thread until something writes to it.
 */
async function openRegularFile(path: string): Promise<OpenLog | string> {
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

/**
 * The pause between two polls: `pollMs`, cut short by `notify()` (also one that came since the
 * last wait) or by the watcher stopping.
 */
class Wake {
  readonly #stopped: AbortSignal;
  #notified = false;
  /** Aborted to end the current wait early; undefined between waits. */
  #current: AbortController | undefined;

  constructor(stopped: AbortSignal) {
    this.#stopped = stopped;
    stopped.addEventListener('abort', () => this.#current?.abort(), { once: true });
  }

  notify(): void {
    const current = this.#current;
    // Cleared at once: a second notify before the waiter resumes is kept for the next wait.
    this.#current = undefined;
    if (current === undefined) this.#notified = true;
    else current.abort();
  }

  async wait(ms: number): Promise<void> {
    if (this.#stopped.aborted) return;
    if (this.#notified) {
      this.#notified = false;
      return;
    }
    const current = new AbortController();
    this.#current = current;
    try {
      await delay(ms, current.signal);
    } finally {
      if (this.#current === current) this.#current = undefined;
    }
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
