/**
 * Drain under load. First, 200 clients streaming back to back when SIGTERM arrives, with a 10 s
 * grace period: every request under way must complete, later ones get 503 (or a refused connection
 * once the listeners close), none is cut. Then streams of 30 s with a 1 s grace period: every one
 * is cut at the grace period and the worker exits at once. In both, the worker exits 0 and every
 * request that started is reported once to /delete_requests/.
 */
import { pool, call } from '../support/http.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack, type Stack } from '../support/stack.ts';
import { poll, pollOrGiveUp, sleep, Tally } from '../support/timing.ts';

const CLIENTS = 200;
const IDX_BASE = 3_000_000;
const LONG_IDX_BASE = 3_500_000;

/** Merges sorted single values into [from, to) ranges. */
function toRanges(values: readonly number[]): [number, number][] {
  const sorted = [...values].sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const value of sorted) {
    const last = ranges.at(-1);
    if (last !== undefined && last[1] === value) last[1] = value + 1;
    else ranges.push([value, value + 1]);
  }
  return ranges;
}

async function reportedOnce(
  stack: Stack,
  idx: readonly number[],
): Promise<{ missing: number; duplicated: number }> {
  const ranges = toRanges(idx);
  return (
    (await pollOrGiveUp(
      async () => {
        const result = await stack.autoscaler.check(ranges);
        return result.missing === 0 || result.duplicated > 0 ? result : false;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    )) ?? (await stack.autoscaler.check(ranges))
  );
}

export const drainScenario: Scenario = {
  name: 'drain',
  timeLimitMs: (quick) => (quick ? 150_000 : 240_000),
  async run({ quick, progress }) {
    const verdict = new Verdict();
    await busyDrain(verdict, quick, progress);
    await longStreamsDrain(verdict, quick, progress);
    return verdict;
  },
};

async function busyDrain(
  verdict: Verdict,
  quick: boolean,
  progress: (message: string) => void,
): Promise<void> {
  const GRACE_S = 10;
  const stack = await startStack({
    name: 'drain',
    workerEnv: { TERMINATION_GRACE_PERIOD_SECONDS: String(GRACE_S) },
  });
  const clients = pool(stack.worker.url, CLIENTS);
  try {
    const ticket = await stack.autoscaler.route();
    // Streams of about 2 s: 40 tokens, 50 ms each.
    await stack.model.configure({ tokenDelayMs: 50 });
    // Requests that ended before the signal are only counted; the figures are about the others,
    // which were in flight when SIGTERM came or were sent after it.
    let before = 0;
    const outcomes = new Tally();
    const started: number[] = [];
    let nextIdx = IDX_BASE;
    let signalled = false;
    const client = async (): Promise<void> => {
      for (let round = 0; round < 1_000; round++) {
        const idx = nextIdx++;
        const sentAfter = signalled;
        const answer = await call(
          clients,
          '/generate_stream',
          signedBody(ticket, idx, helloPayload('drain me', 40)),
          { deadlineMs: (GRACE_S + 20) * 1000 },
        );
        const kind =
          answer.kind === 'answered'
            ? answer.status === 200
              ? answer.body.includes('"done":true')
                ? 'completed'
                : 'truncated'
              : String(answer.status)
            : answer.kind === 'failed'
              ? 'refused'
              : answer.kind === 'deadline'
                ? 'hung'
                : answer.kind;
        if (kind === 'completed' || kind === 'cut' || kind === 'truncated') started.push(idx);
        if (!signalled) {
          before++;
          if (kind === 'completed') continue;
          return;
        }
        outcomes.add(kind);
        // A client whose request finished after the signal tries once more, then stops.
        if (kind === 'completed' && !sentAfter) continue;
        return;
      }
    };
    const running = Array.from({ length: CLIENTS }, client);
    await sleep(quick ? 3_000 : 6_000);
    const workerInFlight = await stack.worker.metric('tsworker_inflight_requests');
    progress(`SIGTERM after ${before} completed requests, ${workerInFlight} in flight`);
    const signalledAt = performance.now();
    signalled = true;
    stack.worker.process.signal('SIGTERM');
    const exit = await Promise.race([
      stack.worker.process.exited,
      sleep((GRACE_S + 15) * 1000).then(() => undefined),
    ]);
    const drainMs = performance.now() - signalledAt;
    await Promise.all(running);
    const reported = await reportedOnce(stack, started);
    verdict
      .figure(
        `${CLIENTS} clients, grace ${GRACE_S} s, ${workerInFlight} in flight at SIGTERM: ` +
          `${outcomes.get('completed')} completed / ${outcomes.get(503)} 503 / ${outcomes.get('cut')} cut` +
          ` / ${outcomes.get('refused')} refused; exit ${String(exit?.code)} after ${fmt.s(drainMs)}`,
        'drainBusy',
        {
          inFlightAtSignal: workerInFlight,
          completed: outcomes.get('completed'),
          status503: outcomes.get(503),
          cut: outcomes.get('cut'),
          refused: outcomes.get('refused'),
          drainMs,
        },
      )
      .check(exit?.code === 0, `the worker exited ${JSON.stringify(exit)} instead of 0`)
      .check(
        outcomes.sum((k) => k !== '503' && k !== 'refused' && k !== 'completed') === 0,
        `after SIGTERM: ${outcomes.toString()} (only completed, 503 or refused expected)`,
      )
      .check(drainMs <= (GRACE_S + 5) * 1000, `the drain took ${fmt.s(drainMs)}`)
      .check(
        reported.missing === 0 && reported.duplicated === 0,
        `busy drain: ${reported.missing} started requests never reported, ${reported.duplicated} twice`,
      );
  } finally {
    await clients.close();
    await stack.close();
  }
}

async function longStreamsDrain(
  verdict: Verdict,
  quick: boolean,
  progress: (message: string) => void,
): Promise<void> {
  const GRACE_S = 1;
  const STREAMS = quick ? 50 : 200;
  const stack = await startStack({
    name: 'drain-long',
    // Every stream runs at the model at once (the default pool holds 100 connections).
    workerEnv: { TERMINATION_GRACE_PERIOD_SECONDS: String(GRACE_S), MAX_CONNECTIONS: '256' },
  });
  const clients = pool(stack.worker.url, STREAMS);
  try {
    const ticket = await stack.autoscaler.route();
    // 30 s streams: 300 tokens, 100 ms each.
    await stack.model.configure({ tokenDelayMs: 100 });
    let firstChunks = 0;
    const idx = Array.from({ length: STREAMS }, (_, i) => LONG_IDX_BASE + i);
    const calls = idx.map((n) =>
      call(clients, '/generate_stream', signedBody(ticket, n, helloPayload('a long one', 300)), {
        deadlineMs: 40_000,
        onFirstChunk: () => firstChunks++,
      }),
    );
    await poll(() => firstChunks === STREAMS, {
      timeoutMs: 10_000,
      label: 'every stream under way',
    });
    progress(`SIGTERM with ${STREAMS} 30 s streams under way`);
    const signalledAt = performance.now();
    stack.worker.process.signal('SIGTERM');
    const exit = await Promise.race([
      stack.worker.process.exited,
      sleep(15_000).then(() => undefined),
    ]);
    const drainMs = performance.now() - signalledAt;
    const outcomes = new Tally();
    for (const outcome of await Promise.all(calls)) {
      outcomes.add(
        outcome.kind === 'answered'
          ? outcome.body.includes('"done":true')
            ? 'completed'
            : String(outcome.status)
          : outcome.kind,
      );
    }
    const reported = await reportedOnce(stack, idx);
    verdict
      .figure(
        `${STREAMS} 30 s streams, grace ${GRACE_S} s: ${outcomes.get('completed')} completed / ` +
          `${outcomes.get('cut')} cut, exit ${String(exit?.code)} after ${fmt.s(drainMs)}`,
        'drainLong',
        { completed: outcomes.get('completed'), cut: outcomes.get('cut'), drainMs },
      )
      .check(exit?.code === 0, `the worker exited ${JSON.stringify(exit)} instead of 0`)
      .check(
        outcomes.get('cut') === STREAMS,
        `long streams: ${outcomes.toString()} (all should be cut)`,
      )
      .check(drainMs <= (GRACE_S + 4) * 1000, `the drain with 1 s grace took ${fmt.s(drainMs)}`)
      .check(
        reported.missing === 0 && reported.duplicated === 0,
        `long streams: ${reported.missing} never reported, ${reported.duplicated} twice`,
      );
  } finally {
    await clients.close();
    await stack.close();
  }
}
