/**
 * The soak (full mode only): a million signed requests at concurrency 32, the worker's RSS sampled
 * every second. Figures: RSS at the start (after a warm-up), its peak and end, and the slope in MB
 * per 100,000 requests (least squares over the samples). Pass: every request served, every
 * request_idx reported exactly once, a slope under 2 MB per 100k, the reports consistent.
 */
import { checkAlive, checkReportsConsistent } from '../support/checks.ts';
import { Pool } from 'undici';
import { describeError } from '../support/http.ts';
import { MB, procStats } from '../support/processes.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack } from '../support/stack.ts';
import { pollOrGiveUp, sleep, slope, Tally } from '../support/timing.ts';

const DEFAULT_REQUESTS = 1_000_000;
const WARMUP = 10_000;
const CONCURRENCY = 32;
const IDX_BASE = 10_000_000;
/** The traffic stops here even if the count is not reached; the figures say how far it got. */
const TRAFFIC_BOUND_MS = 22 * 60_000;
const SLOPE_BOUND_MB = 2;
const DEADLINE_MS = 10_000;
const JSON_HEADERS = { 'content-type': 'application/json' };
/** The slope is taken over the steady state: the samples after this share of the requests. */
const STEADY_FROM = 0.2;

/** How many requests the steady state is counted from: those planned, or those sent if fewer. */
function measuredTarget(planned: number, done: number): number {
  return Math.min(planned, done - WARMUP);
}

export const soakScenario: Scenario = {
  name: 'soak',
  fullOnly: true,
  timeLimitMs: () => 28 * 60_000,
  async run({ progress, soakRequests }) {
    const verdict = new Verdict();
    const REQUESTS = soakRequests ?? DEFAULT_REQUESTS;
    const stack = await startStack({ name: 'soak' });
    // The lightest client: one request per call, the pool's own timeouts as the deadline.
    const clients = new Pool(stack.worker.url, {
      connections: CONCURRENCY,
      headersTimeout: DEADLINE_MS,
      bodyTimeout: DEADLINE_MS,
    });
    try {
      const ticket = await stack.autoscaler.route();
      const pid = stack.worker.process.pid;
      const payload = helloPayload('soak the worker for a while', 2);
      const statuses = new Tally();
      let next = 0;
      let done = 0;
      let stopAt = Number.POSITIVE_INFINITY;
      const lane = async (limit: number): Promise<void> => {
        while (next < limit && Date.now() < stopAt) {
          const idx = IDX_BASE + next++;
          try {
            const response = await clients.request({
              path: '/generate',
              method: 'POST',
              headers: JSON_HEADERS,
              body: signedBody(ticket, idx, payload),
            });
            await response.body.dump();
            statuses.add(response.statusCode);
          } catch (error) {
            statuses.add(describeError(error).split(':')[0] ?? 'error');
          }
          done++;
        }
      };
      const runUntil = (limit: number): Promise<void[]> =>
        Promise.all(Array.from({ length: CONCURRENCY }, () => lane(limit)));

      await runUntil(WARMUP);
      await sleep(2_000);
      const startRss = procStats(pid).rss;
      const samples: [number, number][] = [[done, startRss]];
      let peak = startRss;
      const startedAt = Date.now();
      stopAt = startedAt + TRAFFIC_BOUND_MS;
      const sampler = setInterval(() => {
        const rss = procStats(pid).rss;
        peak = Math.max(peak, rss);
        samples.push([done, rss]);
        if (samples.length % 30 === 0) {
          const rate = (done - WARMUP) / ((Date.now() - startedAt) / 1000);
          progress(`${fmt.int(done)} requests, ${Math.round(rate)}/s, RSS ${fmt.mb(rss)}`);
        }
      }, 1_000);
      try {
        await runUntil(WARMUP + REQUESTS);
      } finally {
        clearInterval(sampler);
      }
      const trafficMs = Date.now() - startedAt;
      await sleep(2_000);
      const endRss = procStats(pid).rss;
      samples.push([done, endRss]);
      const measured = done - WARMUP;
      peak = Math.max(peak, endRss);
      const steady = samples.filter(
        ([n]) => n >= WARMUP + STEADY_FROM * measuredTarget(REQUESTS, done),
      );
      const mbPer100k = (slope(steady) * 100_000) / MB;
      const overallMbPer100k = ((endRss - startRss) / MB / Math.max(1, done - WARMUP)) * 100_000;
      const trafficEnd = Date.now();

      const range: [number, number] = [IDX_BASE, IDX_BASE + next];
      const check =
        (await pollOrGiveUp(
          async () => {
            const result = await stack.autoscaler.check([range]);
            return result.missing === 0 || result.duplicated > 0 ? result : false;
          },
          { timeoutMs: 60_000, intervalMs: 500 },
        )) ?? (await stack.autoscaler.check([range]));
      verdict
        .figure(
          `${fmt.int(measured)} requests in ${fmt.s(trafficMs)} (${Math.round(measured / (trafficMs / 1000))}/s)`,
          'requests',
          measured,
        )
        .figure(
          `RSS start ${fmt.mb(startRss)}, peak ${fmt.mb(peak)}, end ${fmt.mb(endRss)}`,
          'rssMb',
          { start: startRss / MB, peak: peak / MB, end: endRss / MB },
        )
        .figure(
          `${mbPer100k.toFixed(2)} MB per 100k requests in the steady state ` +
            `(${overallMbPer100k.toFixed(2)} over the whole run)`,
          'mbPer100k',
          { steady: mbPer100k, overall: overallMbPer100k },
        )
        .figure(`answers ${statuses.toString()}`)
        .figure(`/delete_requests/ missing ${check.missing}, duplicated ${check.duplicated}`)
        .check(
          measured >= REQUESTS || trafficMs >= TRAFFIC_BOUND_MS,
          `only ${measured} requests were sent`,
        )
        .check(statuses.get(200) === done, `not every request was served: ${statuses.toString()}`)
        .check(
          mbPer100k <= SLOPE_BOUND_MB,
          `RSS grows ${mbPer100k.toFixed(2)} MB per 100k requests`,
        )
        .check(check.missing === 0, `${check.missing} request_idx never reported`)
        .check(check.duplicated === 0, `${check.duplicated} request_idx reported twice`);
      if (measured < REQUESTS) {
        verdict.figure(`stopped at the ${TRAFFIC_BOUND_MS / 60_000} min bound`);
      }
      if (await checkAlive(stack, verdict))
        await checkReportsConsistent(stack, verdict, trafficEnd);
      return verdict;
    } finally {
      await clients.close();
      await stack.close();
    }
  },
};
