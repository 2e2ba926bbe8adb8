import fs from 'node:fs';
import {
  appendFile,
  copyFile,
  mkdtemp,
  rename,
  rm,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  watchModelLog,
  type LogMatch,
  type LogWatcher,
  type LogWatcherOptions,
} from '../../lib/readiness/log-watcher.ts';
import { LogAction } from '../../lib/worker.ts';
import { waitFor } from '../helpers/wait-for.ts';

type WatcherEvent = Parameters<NonNullable<LogWatcherOptions['onEvent']>>[0];

// In ResolvedWorker.logActions order: on_load, then on_error, then on_info.
const ACTIONS: readonly (readonly [LogAction, string])[] = [
  [LogAction.ModelLoaded, 'server has started'],
  [LogAction.ModelLoaded, 'has started'],
  [LogAction.ModelError, 'Exception: corrupted model file'],
  [LogAction.ModelError, 'Exception'],
  [LogAction.Info, 'Downloading'],
  [LogAction.Info, 'shards'],
  [LogAction.Info, 'model'],
];

// Generous: the suite must pass on a loaded 2-core machine.
const DEADLINE = { timeoutMs: 10_000 };

let dir: string;
let logPath: string;
let running: LogWatcher[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsworker-log-watcher-'));
  logPath = join(dir, 'model.log');
  running = [];
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.map((watcher) => watcher.stop()));
  await rm(dir, { recursive: true, force: true });
});

function watch(overrides: Partial<LogWatcherOptions> = {}) {
  const matches: LogMatch[] = [];
  const events: WatcherEvent[] = [];
  const watcher = watchModelLog({
    path: logPath,
    actions: ACTIONS,
    onMatch: (match) => matches.push(match),
    onEvent: (event) => events.push(event),
    pollMs: 20,
    ...overrides,
  });
  running.push(watcher);
  return { watcher, matches, events };
}

/** Waits until the watcher has handled `count` lines in total. */
function linesRead(watcher: LogWatcher, count: number, label: string): Promise<true> {
  return waitFor(() => watcher.linesRead >= count, { ...DEADLINE, label });
}

describe('watchModelLog', () => {
  it('waits for the file to be created, then reads it', async () => {
    const { watcher, matches, events } = watch();
    await waitFor(() => events.some((e) => e.kind === 'waiting'), {
      ...DEADLINE,
      label: 'waiting',
    });
    expect(watcher.linesRead).toBe(0);

    await writeFile(logPath, 'booting\nINFO server has started on :5001\n');

    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'load match' });
    expect(matches).toEqual([
      {
        action: LogAction.ModelLoaded,
        pattern: 'server has started',
        line: 'INFO server has started on :5001',
      },
    ]);
    expect(events.some((e) => e.kind === 'opened')).toBe(true);
  });

  it('reads lines already in the file, in order', async () => {
    await writeFile(logPath, 'Downloading shards\nloading model\nserver has started\n');
    const { watcher, matches } = watch();

    await linesRead(watcher, 3, 'three lines');
    expect(matches.map((m) => [m.action, m.line])).toEqual([
      [LogAction.Info, 'Downloading shards'],
      [LogAction.Info, 'loading model'],
      [LogAction.ModelLoaded, 'server has started'],
    ]);
  });

  it('fires ModelLoaded once for a line that two on_load patterns match', async () => {
    await writeFile(logPath, 'server has started\nserver has started again\nmarker\n');
    const { watcher, matches } = watch();

    await linesRead(watcher, 3, 'marker line');
    // Once per line: a repeated load line fires again, and the caller decides what that means.
    expect(matches).toEqual([
      { action: LogAction.ModelLoaded, pattern: 'server has started', line: 'server has started' },
      {
        action: LogAction.ModelLoaded,
        pattern: 'server has started',
        line: 'server has started again',
      },
    ]);
  });

  it('reports an error with the full line and checks no later pattern on that line', async () => {
    const line = 'server has started, then Exception: corrupted model file /models/x.bin (shards)';
    await writeFile(logPath, `${line}\nmarker\n`);
    const { watcher, matches } = watch();

    await linesRead(watcher, 2, 'marker line');
    // The load pattern comes first in the list, so it fires; the error breaks the walk, so the
    // second error pattern and the info patterns do not.
    expect(matches).toEqual([
      { action: LogAction.ModelLoaded, pattern: 'server has started', line },
      { action: LogAction.ModelError, pattern: 'Exception: corrupted model file', line },
    ]);
  });

  it('reports info lines once each, with trailing whitespace and CR stripped', async () => {
    await writeFile(logPath, 'Downloading model shards  \r\nplain line\r\n');
    const { watcher, matches } = watch();

    await linesRead(watcher, 2, 'two lines');
    expect(matches).toEqual([
      { action: LogAction.Info, pattern: 'Downloading', line: 'Downloading model shards' },
    ]);
  });

  it('holds a half-written last line until its newline arrives', async () => {
    const { watcher, matches } = watch();
    // One write: once the marker is counted, the watcher has read the partial line too.
    await writeFile(logPath, 'marker\nserver has st');
    await linesRead(watcher, 1, 'marker line');
    expect(watcher.linesRead).toBe(1);
    expect(matches).toEqual([]);

    await appendFile(logPath, 'arted\n');
    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'completed load line' });
    expect(matches).toEqual([
      { action: LogAction.ModelLoaded, pattern: 'server has started', line: 'server has started' },
    ]);
    expect(watcher.linesRead).toBe(2);
  });

  it('follows a rename rotation to the new file, from its start', async () => {
    await writeFile(logPath, 'old line 1\nold line 2\n');
    const { watcher, matches, events } = watch();
    await linesRead(watcher, 2, 'old lines');

    await rename(logPath, `${logPath}.old`);
    await writeFile(logPath, 'new line 1\nserver has started\n');

    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'load line in the new file' });
    expect(matches.map((m) => m.line)).toEqual(['server has started']);
    expect(events.some((e) => e.kind === 'rotated')).toBe(true);
    expect(watcher.linesRead).toBe(4);
  });

  it('follows a copy-truncate rotation, reading the new content from offset 0', async () => {
    // The old content must be longer than the new: truncation is detected by the size shrinking
    // below the read offset (the watcher checks at end of file).
    const old = Array.from({ length: 5 }, (_, i) => `old line ${i} ${'x'.repeat(60)}\n`).join('');
    await writeFile(logPath, old);
    const { watcher, matches, events } = watch();
    await linesRead(watcher, 5, 'old lines');

    await copyFile(logPath, `${logPath}.1`);
    await truncate(logPath, 0);
    await appendFile(logPath, 'new\nserver has started\n');

    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'load line after truncation' });
    expect(matches.map((m) => m.line)).toEqual(['server has started']);
    expect(events.some((e) => e.kind === 'truncated')).toBe(true);
    expect(watcher.linesRead).toBe(7);
  });

  it('follows the file through deletion and re-creation', async () => {
    await writeFile(logPath, 'first life\n');
    const { watcher, matches } = watch();
    await linesRead(watcher, 1, 'first line');

    await unlink(logPath);
    await writeFile(logPath, 'second life\nserver has started\n');

    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'load line in the new file' });
    expect(matches.map((m) => m.line)).toEqual(['server has started']);
    expect(watcher.linesRead).toBe(3);
  });

  it('reports an exception from onMatch as an error event and keeps reading', async () => {
    await writeFile(logPath, 'Downloading\nserver has started\n');
    const seen: string[] = [];
    const { watcher, events } = watch({
      onMatch: (match) => {
        seen.push(match.line);
        if (match.action === LogAction.Info) throw new Error('boom');
      },
    });

    await linesRead(watcher, 2, 'both lines');
    expect(seen).toEqual(['Downloading', 'server has started']);
    expect(events).toContainEqual({ kind: 'error', detail: 'onMatch threw: boom' });
  });

  it('resumes after a read error without replaying lines', async () => {
    await writeFile(logPath, 'a\nb\n');
    const { watcher, matches, events } = watch({ actions: [[LogAction.Info, '']] });
    await linesRead(watcher, 2, 'first two lines');

    const realRead = fs.read;
    let failNext = true;
    // The watcher calls the same fs object, so this reaches its reads.
    vi.spyOn(fs, 'read').mockImplementation(((...args: unknown[]) => {
      if (!failNext) return Reflect.apply(realRead, fs, args);
      failNext = false;
      const callback = args.at(-1) as (error: Error) => void;
      process.nextTick(() => callback(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })));
    }) as unknown as typeof fs.read);
    await appendFile(logPath, 'c\n');

    await waitFor(() => matches.some((m) => m.line === 'c'), { ...DEADLINE, label: 'line c' });
    expect(failNext).toBe(false);
    expect(events.some((e) => e.kind === 'error' && e.detail?.includes('EIO'))).toBe(true);
    expect(matches.map((m) => m.line)).toEqual(['a', 'b', 'c']);
    expect(watcher.linesRead).toBe(3);
  });

  it('reports fs.watch throwing (inotify limits) as an error event and retries', async () => {
    await writeFile(logPath, 'server has started\n');
    const realWatch = fs.watch;
    let thrown = false;
    vi.spyOn(fs, 'watch').mockImplementation(((...args: unknown[]) => {
      if (thrown) return Reflect.apply(realWatch, fs, args);
      thrown = true;
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), {
        code: 'ENOSPC',
      });
    }) as unknown as typeof fs.watch);
    const { watcher, matches, events } = watch();

    await waitFor(() => matches.length > 0, { ...DEADLINE, label: 'load line after retry' });
    expect(events.some((e) => e.kind === 'error' && e.detail?.includes('ENOSPC'))).toBe(true);
    expect(matches.map((m) => m.line)).toEqual(['server has started']);
    expect(watcher.linesRead).toBe(1);
  });

  it('stop() resolves, closes its handles, and no match fires afterwards', async () => {
    const handles = () =>
      process
        .getActiveResourcesInfo()
        .filter((r) => r === 'FSEventWrap' || r === 'Timeout')
        .sort();
    const before = handles();
    await writeFile(logPath, 'server has started\n');
    const { watcher, matches } = watch();
    await waitFor(() => matches.length === 1, { ...DEADLINE, label: 'first load line' });

    await watcher.stop();
    // No more handles than before. vitest's own 100 ms timer comes and goes meanwhile, so the
    // check polls until it holds; a handle the watcher leaked would never go away.
    const count = (list: string[], kind: string) => list.filter((r) => r === kind).length;
    await waitFor(
      () => {
        const now = handles();
        return ['FSEventWrap', 'Timeout'].every((k) => count(now, k) <= count(before, k));
      },
      { ...DEADLINE, label: 'the watcher handles closed' },
    );
    await appendFile(logPath, 'server has started\n');

    // A second watcher shows the line was there to be read; the stopped one never reads it.
    const witness = watch();
    await linesRead(witness.watcher, 2, 'witness reading both lines');
    expect(matches).toHaveLength(1);
    expect(watcher.linesRead).toBe(1);
  });

  it('stop() resolves while still waiting for the file', async () => {
    const { watcher, events } = watch();
    await waitFor(() => events.some((e) => e.kind === 'waiting'), {
      ...DEADLINE,
      label: 'waiting',
    });
    await watcher.stop();
    await writeFile(logPath, 'server has started\n');

    const witness = watch();
    await linesRead(witness.watcher, 1, 'witness reading the line');
    expect(watcher.linesRead).toBe(0);
  });
});
