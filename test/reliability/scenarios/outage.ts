/**
 * Autoscaler outage: steady traffic at 200 requests/s, the autoscaler down for a while (first half
 * answering 503, second half refusing connections), then back. Pass: every request_idx reaches
 * /delete_requests/ exactly once after the recovery, and nothing is dropped.
 */
import { checkAlive, checkReportsConsistent } from '../support/checks.ts';
import { call, pool, type CallOutcome } from '../support/http.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack } from '../support/stack.ts';
import { pollOrGiveUp, sleep, Tally } from '../support/timing.ts';

const RATE = 200;
const IDX_BASE = 2_000_000;

export const outageScenario: Scenario = {
  name: 'outage',
  timeLimitMs: (quick) => (quick ? 120_000 : 240_000),
  async run({ quick, progress }) {
    const verdict = new Verdict();
    const [beforeS, downS, afterS] = quick ? [3, 15, 4] : [10, 60, 20];
    const stack = await startStack({ name: 'outage' });
    const clients = pool(stack.worker.url, 64);
    try {
      const ticket = await stack.autoscaler.route();
      const statuses = new Tally();
      const pending = new Set<Promise<CallOutcome>>();
      let sent = 0;
      const startedAt = performance.now();
      const totalMs = (beforeS + downS + afterS) * 1000;
      // Open loop: keep the count sent at RATE × elapsed, whatever the answers do.
      const ticker = setInterval(() => {
        const due = Math.min(
          Math.floor(((performance.now() - startedAt) / 1000) * RATE),
          (totalMs / 1000) * RATE,
        );
        while (sent < due) {
          const idx = IDX_BASE + sent++;
          const request = call(
            clients,
            '/generate',
            signedBody(ticket, idx, helloPayload('outage', 2)),
            {
              deadlineMs: 10_000,
            },
          );
          pending.add(request);
          void request.then((outcome) => {
            pending.delete(request);
            statuses.add(outcome.kind === 'answered' ? String(outcome.status) : outcome.kind);
          });
        }
      }, 5);
      try {
        await sleep(beforeS * 1000);
        progress(`autoscaler down (503) after ${sent} requests`);
        await stack.autoscaler.outage('503');
        await sleep((downS * 1000) / 2);
        progress(`autoscaler down (connection refused) after ${sent} requests`);
        await stack.autoscaler.outage('refused');
        await sleep((downS * 1000) / 2);
        progress(`autoscaler back after ${sent} requests`);
        await stack.autoscaler.outage('up');
        const backAt = Date.now();
        // How long the backlog of the outage takes to reach the autoscaler once it is back.
        const backlog: [number, number] = [IDX_BASE, IDX_BASE + sent];
        const caughtUp = pollOrGiveUp(
          async () => (await stack.autoscaler.check([backlog])).missing === 0,
          { timeoutMs: afterS * 1000 + 30_000, intervalMs: 200 },
        ).then((done) => (done === true ? (Date.now() - backAt) / 1000 : undefined));
        await sleep(afterS * 1000);
        clearInterval(ticker);
        await Promise.all(pending);
        const trafficEnd = Date.now();

        const range: [number, number] = [IDX_BASE, IDX_BASE + sent];
        const check =
          (await pollOrGiveUp(
            async () => {
              const result = await stack.autoscaler.check([range]);
              return result.missing === 0 || result.duplicated > 0 ? result : false;
            },
            { timeoutMs: 30_000, intervalMs: 250 },
          )) ?? (await stack.autoscaler.check([range]));
        const caughtUpS = await caughtUp;
        const dropped = (await stack.worker.metrics()).get(
          'tsworker_delete_requests_dropped_total',
        );
        verdict
          .figure(`${fmt.int(sent)} requests at ${RATE}/s, ${downS} s down`, 'requests', sent)
          .figure(`answers ${statuses.toString()}`)
          .figure(
            `missing ${check.missing}, duplicated ${check.duplicated}`,
            'missing',
            check.missing,
          )
          .figure(`dropped ${String(dropped)}`, 'dropped', dropped)
          .figure(
            `the outage's backlog reported ${caughtUpS === undefined ? 'NEVER' : `${caughtUpS.toFixed(1)} s`} after the recovery`,
            'backlogSeconds',
            caughtUpS,
          )
          .check(
            check.missing === 0,
            `${check.missing} request_idx never reported (e.g. ${check.missingSample.join(', ')})`,
          )
          .check(check.duplicated === 0, `${check.duplicated} request_idx reported twice`)
          .check(
            dropped === 0,
            `${String(dropped)} entries dropped (tsworker_delete_requests_dropped_total)`,
          )
          .check(
            statuses.get(200) === sent,
            `not every request was served: ${statuses.toString()}`,
          );
        if (await checkAlive(stack, verdict)) {
          await checkReportsConsistent(stack, verdict, trafficEnd);
        }
      } finally {
        clearInterval(ticker);
      }
      return verdict;
    } finally {
      await clients.close();
      await stack.close();
    }
  },
};
