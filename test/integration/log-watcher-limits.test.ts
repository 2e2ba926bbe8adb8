import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MAX_LOG_LINE_BYTES,
  watchModelLog,
  type LogMatch,
  type LogWatcher,
  type LogWatcherOptions,
} from '../../lib/readiness/log-watcher.ts';
import { LogAction } from '../../lib/worker.ts';
import { waitFor } from '../helpers/wait-for.ts';

type WatcherEvent = Parameters<NonNullable<LogWatcherOptions['onEvent']>>[0];

const ACTIONS: readonly (readonly [LogAction, string])[] = [
  [LogAction.ModelLoaded, 'server has started'],
  [LogAction.ModelError, 'Exception'],
  [LogAction.Info, 'Downloading'],
  [LogAction.Info, 'model'],
];

// Generous, for a loaded 2-core machine; the figure measured on an idle one is in README.
const DEADLINE = { timeoutMs: 10_000 };

let dir: string;
let logPath: string;
let running: LogWatcher[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsworker-log-limits-'));
  logPath = join(dir, 'model.log');
  running = [];
});

afterEach(async () => {
  await Promise.all(running.map((watcher) => watcher.stop()));
  await rm(dir, { recursive: true, force: true });
});

function watch() {
  const matches: LogMatch[] = [];
  const events: WatcherEvent[] = [];
  const watcher = watchModelLog({
    path: logPath,
    actions: ACTIONS,
    onMatch: (match) => matches.push(match),
    onEvent: (event) => events.push(event),
    pollMs: 20,
  });
  running.push(watcher);
  return { watcher, matches, events };
}

/** Starts watching an empty log, as start_server.sh leaves it, and waits until it is open. */
async function watchEmptyLog() {
  await writeFile(logPath, '');
  const watched = watch();
  await waitFor(() => watched.events.some((e) => e.kind === 'opened'), {
    ...DEADLINE,
    label: 'log opened',
  });
  return watched;
}

describe('watchModelLog under hostile log output', () => {
  it('detects an error line written after a 10 MB line, matching the long line on its first part', async () => {
    const { watcher, matches, events } = await watchEmptyLog();

    await appendFile(logPath, `Downloading ${'x'.repeat(10 * 1024 * 1024)}\n`);
    await appendFile(logPath, 'Exception: CUDA out of memory\n');

    const error = await waitFor(() => matches.find((m) => m.action === LogAction.ModelError), {
      ...DEADLINE,
      label: 'the error line after the 10 MB line',
    });
    expect(error).toEqual({
      action: LogAction.ModelError,
      pattern: 'Exception',
      line: 'Exception: CUDA out of memory',
    });
    const [long] = matches;
    expect(long?.action).toBe(LogAction.Info);
    expect(long?.line.length).toBe(MAX_LOG_LINE_BYTES);
    expect(long?.line.startsWith('Downloading xxx')).toBe(true);
    expect(watcher.linesRead).toBe(2);
    expect(watcher.linesCut).toBe(1);
    expect(events.filter((e) => e.kind === 'long-line')).toHaveLength(1);
  });

  it('never sees a pattern beyond the cap, and never cuts a character in two', async () => {
    const { watcher, matches, events } = await watchEmptyLog();
    const head = 'server has started ';
    // 19 bytes, then 2-byte characters: the cap falls in the middle of one of them.
    const long = `${head}${'é'.repeat(MAX_LOG_LINE_BYTES)} Exception beyond the cap`;
    await appendFile(logPath, `${long}\n${long}\nmarker\n`);

    await waitFor(() => watcher.linesRead === 3, { ...DEADLINE, label: 'three lines' });
    const kept = `${head}${'é'.repeat(Math.floor((MAX_LOG_LINE_BYTES - head.length) / 2))}`;
    expect(Buffer.byteLength(kept)).toBe(MAX_LOG_LINE_BYTES - 1);
    // Compared piecewise: a failure message with two 64 KiB strings helps nobody.
    expect(matches.map((m) => [m.action, m.pattern, Buffer.byteLength(m.line)])).toEqual([
      [LogAction.ModelLoaded, 'server has started', MAX_LOG_LINE_BYTES - 1],
      [LogAction.ModelLoaded, 'server has started', MAX_LOG_LINE_BYTES - 1],
    ]);
    expect(matches.every((m) => m.line === kept)).toBe(true);
    // Both lines are counted; the log says so once.
    expect(watcher.linesCut).toBe(2);
    expect(events.filter((e) => e.kind === 'long-line')).toHaveLength(1);
  });

  it('ends a line at a bare \\r, so each progress-bar update is a line', async () => {
    const { watcher, matches } = await watchEmptyLog();

    await appendFile(logPath, 'Downloading:  10%\rDownloading:  55%\rDownloading: 100%\r');
    await waitFor(() => watcher.linesRead === 3, { ...DEADLINE, label: 'three progress lines' });
    // The \n of a \r\n split across two writes ends no second line.
    await appendFile(logPath, '\nserver has started\rDownloading: still half-wri');

    await waitFor(() => watcher.linesRead === 4, { ...DEADLINE, label: 'the load line' });
    expect(matches.map((m) => [m.action, m.line])).toEqual([
      [LogAction.Info, 'Downloading:  10%'],
      [LogAction.Info, 'Downloading:  55%'],
      [LogAction.Info, 'Downloading: 100%'],
      [LogAction.ModelLoaded, 'server has started'],
    ]);
  });

  it('turns bytes that are not UTF-8 into U+FFFD and keeps matching, but keeps a character split across writes whole', async () => {
    const { watcher, matches } = await watchEmptyLog();
    const eAcute = Buffer.from('é');

    // One write: once its five lines are counted, the watcher has read the half character too.
    await appendFile(
      logPath,
      Buffer.concat([
        Buffer.from('loading model '),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(' weights\n'),
        // A character cut short by the line end, an overlong encoding, a lone continuation byte.
        Buffer.from([0xe2, 0x82, 0x0a, 0xc0, 0xaf, 0x0a, 0x80, 0x0a]),
        Buffer.from('Exception: after the garbage\nloading model caf'),
        eAcute.subarray(0, 1),
      ]),
    );
    await waitFor(() => watcher.linesRead === 5, { ...DEADLINE, label: 'five lines' });
    await appendFile(logPath, Buffer.concat([eAcute.subarray(1), Buffer.from(' weights\n')]));

    await waitFor(() => watcher.linesRead === 6, { ...DEADLINE, label: 'the sixth line' });
    expect(matches).toEqual([
      { action: LogAction.Info, pattern: 'model', line: 'loading model \uFFFD\uFFFD weights' },
      { action: LogAction.ModelError, pattern: 'Exception', line: 'Exception: after the garbage' },
      { action: LogAction.Info, pattern: 'model', line: 'loading model café weights' },
    ]);
  });
});
