/**
 * Log faults: the model's log (MODEL_LOG) rotated by rename, by copy-truncate and by
 * delete-and-recreate, lines with invalid UTF-8, and a 10 MB line (a progress bar redrawn with \r)
 * followed by an error line. After each fault a marker line that hello_world's `onInfo` pattern
 * echoes is written, and the time until the worker logs it is measured. Pass: every marker seen
 * within 5 s, the error after the 10 MB line detected within 1 s, the worker alive.
 */
import {
  appendFileSync,
  copyFileSync,
  renameSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { checkAlive } from '../support/checks.ts';
import { getText } from '../support/http.ts';
import { procStats } from '../support/processes.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { startStack, type Stack } from '../support/stack.ts';
import { pollOrGiveUp } from '../support/timing.ts';

const MARKER_BOUND_MS = 5_000;
const ERROR_BOUND_MS = 1_000;
const HUGE_LINE_BYTES = 10 * 1024 * 1024;

/** About 4 KB of the lines a model server writes while it serves. */
const ordinaryLines = (step: string): string =>
  Array.from(
    { length: 50 },
    (_, i) => `2026-01-01T00:00:00Z INFO  ${step}: served request ${i} in 12 ms (200)\n`,
  ).join('');

/** A line hello_world's onInfo pattern ('"message":"Download') makes the worker echo. */
const markerLine = (marker: string): string => `{"message":"Download ${marker}"}\n`;

/** Resolves with the milliseconds until the worker logs a line containing `marker`. */
function watchFor(stack: Stack, marker: string, timeoutMs: number): Promise<number | undefined> {
  const started = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      off();
      resolve(undefined);
    }, timeoutMs);
    const off = stack.worker.process.onLine((line) => {
      if (!line.includes(marker)) return;
      clearTimeout(timer);
      off();
      resolve(performance.now() - started);
    });
  });
}

export const logFaultsScenario: Scenario = {
  name: 'log-faults',
  timeLimitMs: (quick) => (quick ? 120_000 : 180_000),
  async run({ progress }) {
    const verdict = new Verdict();
    const stack = await startStack({ name: 'log-faults', logLevel: 'info' });
    try {
      const log = stack.modelLog;
      const seen: string[] = [];
      /** Does `fault`, then writes a marker line and times how long the worker takes to log it. */
      const step = async (name: string, fault: (marker: string) => void): Promise<void> => {
        // A real log holds more than the next line, and the worker has read it: without this, a
        // copy-truncate followed by a line longer than what the worker had read would look like
        // the file growing, which no watcher can tell apart.
        const synced = `synced-${name}-${Date.now()}`;
        const syncing = watchFor(stack, synced, MARKER_BOUND_MS);
        appendFileSync(log, ordinaryLines(name) + markerLine(synced));
        verdict.check((await syncing) !== undefined, `${name}: the log before it was not read`);
        const marker = `marker-${name}-${Date.now()}`;
        const watching = watchFor(stack, marker, MARKER_BOUND_MS);
        fault(marker);
        const ms = await watching;
        seen.push(`${name} ${ms === undefined ? 'MISSED' : fmt.ms(ms)}`);
        verdict.check(ms !== undefined, `${name}: marker not seen within ${MARKER_BOUND_MS} ms`);
        progress(`${name}: ${ms === undefined ? 'missed' : fmt.ms(ms)}`);
      };

      await step('append', (m) => appendFileSync(log, markerLine(m)));
      await step('rename', (m) => {
        renameSync(log, `${log}.1`);
        writeFileSync(log, markerLine(m));
      });
      await step('copy-truncate', (m) => {
        copyFileSync(log, `${log}.2`);
        truncateSync(log, 0);
        appendFileSync(log, markerLine(m));
      });
      await step('delete-recreate', (m) => {
        unlinkSync(log);
        writeFileSync(log, markerLine(m));
      });
      await step('invalid-utf8', (m) => {
        appendFileSync(log, Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x0a]));
        appendFileSync(
          log,
          Buffer.concat([
            Buffer.from('{"message":"Download '),
            Buffer.from([0xc0, 0xaf, 0xf8, 0x88]),
            Buffer.from(` ${m}"}\n`),
          ]),
        );
      });

      // A 10 MB line (a progress bar redrawn with \r), then an error line.
      const pid = stack.worker.process.pid;
      const cpuBefore = procStats(pid).cpuMs;
      const bar = (pct: number): string =>
        `\rDownloading shards: ${pct}% |${'#'.repeat(pct % 50)}|`;
      let huge = '';
      for (let i = 0; huge.length < HUGE_LINE_BYTES; i++) huge += bar(i % 100);
      appendFileSync(log, `${huge}\n`);
      const errorWrittenAt = performance.now();
      appendFileSync(log, 'Exception: corrupted model file (after a 10 MB line)\n');
      const detectedMs = await pollOrGiveUp(
        async () => {
          const ready = await getText(`${stack.worker.url}/health/ready`);
          return ready.status === 503 && ready.text.includes('corrupted model file')
            ? performance.now() - errorWrittenAt
            : false;
        },
        { timeoutMs: 25_000, intervalMs: 20 },
      );
      // CPU spent from the 10 MB line to the error's detection: a measure of the work per byte.
      const cpuMs = procStats(pid).cpuMs - cpuBefore;
      await checkAlive(stack, verdict);

      verdict
        .figure(`markers ${seen.join(', ')}`)
        .figure(
          `10 MB line then error: detected ${detectedMs === undefined ? 'NEVER (25 s)' : `in ${fmt.ms(detectedMs)}`}, worker CPU ${fmt.ms(cpuMs)}`,
          'hugeLineDetectMs',
          detectedMs ?? null,
        )
        .check(
          detectedMs !== undefined && detectedMs <= ERROR_BOUND_MS,
          `the error line after a 10 MB line was ${detectedMs === undefined ? 'never detected' : `detected after ${fmt.ms(detectedMs)}`} (bound ${ERROR_BOUND_MS} ms)`,
        );
      verdict.data['hugeLineCpuMs'] = cpuMs;
      return verdict;
    } finally {
      await stack.close();
    }
  },
};
