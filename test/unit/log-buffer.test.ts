/**
 * BufferedLogDestination: stdout's log lines go out in batches (one write for many lines), errors
 * at once, the rest within the flush interval, and everything on flush and at exit (the exit path
 * is proved by test/integration/shutdown.test.ts, on a spawned worker).
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BufferedLogDestination, createLogger } from '../../lib/log.ts';
import { waitFor } from '../helpers/wait-for.ts';

describe('BufferedLogDestination', () => {
  let dir: string;
  let file: string;
  let fd: number;
  const destinations: BufferedLogDestination[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsworker-log-buffer-'));
    file = join(dir, 'out.log');
    fd = openSync(file, 'w');
  });
  afterEach(() => {
    for (const destination of destinations.splice(0)) destination.end();
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  function logger(flushIntervalMs: number) {
    const destination = new BufferedLogDestination(fd, flushIntervalMs);
    destinations.push(destination);
    return createLogger({ level: 'info', pretty: false, destination });
  }
  const written = () => readFileSync(file, 'utf8').split('\n').filter(Boolean);

  it('holds info lines and writes them together on flush, whole and in order', () => {
    const log = logger(60_000);
    for (let i = 0; i < 3; i++) log.info({ requestId: `r${i}` }, 'request');
    expect(written()).toEqual([]);
    log.flush();
    const lines = written().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.map((line) => line['requestId'])).toEqual(['r0', 'r1', 'r2']);
    expect(lines[0]).toMatchObject({ level: 'info', component: 'worker', message: 'request' });
  });

  it('writes an error or fatal line at once, with the lines before it', () => {
    const log = logger(60_000);
    log.info('before');
    log.error('it broke');
    expect(written().map((line) => (JSON.parse(line) as { message: string }).message)).toEqual([
      'before',
      'it broke',
    ]);
    log.fatal('the end');
    expect(written()).toHaveLength(3);
  });

  it('writes held lines within the flush interval', async () => {
    const log = logger(20);
    log.info('soon');
    await waitFor(() => written().length === 1, { label: 'the timer flush' });
  });

  it('writes once the batch is large, without waiting for the timer', () => {
    const log = logger(60_000);
    const filler = 'x'.repeat(1_000);
    let lines = 0;
    while (written().length === 0 && lines < 100) {
      log.info({ filler }, 'large');
      lines += 1;
    }
    expect(lines).toBeGreaterThan(1);
    expect(written()).toHaveLength(lines);
  });
});
