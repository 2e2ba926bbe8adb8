/**
 * Model faults, one phase each: the model killed with SIGKILL mid-stream (then requests while it is
 * dead, then restarted on its port), hung before its headers, answering garbage HTTP (through a
 * fault proxy), answering 500 to everything, failing every other request, resetting connections
 * and dropping mid-body. Every client request has a deadline. Pass: nothing hangs (in the hang
 * phase: the worker lets go of the model once the clients leave), and every request_idx reaches
 * /delete_requests/ exactly once.
 */
import type { Dispatcher } from 'undici';
import { checkAlive, checkReportsConsistent } from '../support/checks.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { call, pool, type CallOutcome } from '../support/http.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack, type Ticket } from '../support/stack.ts';
import { poll, pollOrGiveUp, Tally } from '../support/timing.ts';

const IDX_BASE = 1_000_000;
const DEADLINE_MS = 15_000;
const HANG_DEADLINE_MS = 2_000;

interface PhaseOptions {
  readonly count: number;
  readonly tokens?: number;
  readonly deadlineMs?: number;
  /** Runs once the requests are sent, e.g. kills the model when streams are under way. */
  readonly during?: (firstChunks: () => number) => Promise<void>;
}

class Phases {
  readonly ranges: [number, number][] = [];
  readonly lines: string[] = [];
  hung = 0;
  /** Requests whose connection was closed with no answer at all: not even a status line. */
  readonly silent: string[] = [];
  /** Answers with a status outside 100-599 (a model's own, passed through). */
  readonly oddStatuses: string[] = [];
  #nextIdx = IDX_BASE;
  readonly #ticket: Ticket;
  readonly #clients: Dispatcher;

  constructor(ticket: Ticket, clients: Dispatcher) {
    this.#ticket = ticket;
    this.#clients = clients;
  }

  /** Sends `count` requests at once (half /generate, half streams) and tallies how each ended. */
  async run(name: string, options: PhaseOptions): Promise<Tally> {
    const from = this.#nextIdx;
    this.#nextIdx += options.count;
    this.ranges.push([from, from + options.count]);
    let firstChunks = 0;
    const calls: Promise<CallOutcome>[] = [];
    for (let i = 0; i < options.count; i++) {
      const route = i % 2 === 0 ? '/generate_stream' : '/generate';
      calls.push(
        call(
          this.#clients,
          route,
          signedBody(this.#ticket, from + i, helloPayload(`fault ${name}`, options.tokens ?? 8)),
          {
            deadlineMs: options.deadlineMs ?? DEADLINE_MS,
            onFirstChunk: () => firstChunks++,
          },
        ),
      );
    }
    await options.during?.(() => firstChunks);
    const outcomes = await Promise.all(calls);
    const tally = new Tally();
    for (const outcome of outcomes) {
      tally.add(outcome.kind === 'answered' ? String(outcome.status) : outcome.kind);
    }
    if (options.deadlineMs === undefined) this.hung += tally.get('deadline');
    if (tally.get('failed') > 0) this.silent.push(`${tally.get('failed')} in ${name}`);
    const odd = outcomes.filter(
      (o) => o.kind === 'answered' && (o.status < 100 || o.status > 599),
    ).length;
    if (odd > 0) this.oddStatuses.push(`${odd} in ${name}`);
    this.lines.push(`${name} ${tally.toString()}`);
    return tally;
  }

  /** Sends single requests until one is answered 200 (bounded); their idx are counted too. */
  async untilServed(name: string, timeoutMs: number): Promise<void> {
    const from = this.#nextIdx;
    const range: [number, number] = [from, from];
    this.ranges.push(range);
    await poll(
      async () => {
        const idx = this.#nextIdx++;
        range[1] = this.#nextIdx;
        const outcome = await call(
          this.#clients,
          '/generate',
          signedBody(this.#ticket, idx, helloPayload(name, 2)),
          { deadlineMs: DEADLINE_MS },
        );
        return outcome.kind === 'answered' && outcome.status === 200;
      },
      { timeoutMs, intervalMs: 100, label: `${name}: a request served` },
    );
  }
}

export const modelFaultsScenario: Scenario = {
  name: 'model-faults',
  timeLimitMs: (quick) => (quick ? 150_000 : 300_000),
  async run({ quick, progress }) {
    const verdict = new Verdict();
    const n = quick ? 40 : 200;
    let proxy: FaultProxy | undefined;
    const stack = await startStack({
      name: 'model-faults',
      // Healthchecks would go through the faults too and error the worker half-way; this
      // scenario is about requests, so they are out of the way.
      workerEnv: { HEALTHCHECK_INTERVAL_SECONDS: '3600' },
      modelUrlForWorker: async (modelPort) => {
        proxy = await startFaultProxy(modelPort);
        return proxy.url;
      },
    });
    const clients = pool(stack.worker.url, n * 2);
    try {
      if (proxy === undefined) throw new Error('the fault proxy did not start');
      const ticket = await stack.autoscaler.route();
      const phases = new Phases(ticket, clients);
      const { model } = stack;

      progress('kill -9 mid-stream');
      await model.configure({ tokenDelayMs: 20 });
      let killedWithStreams = 0;
      await phases.run('kill-9', {
        count: n,
        tokens: 150,
        during: async (firstChunks) => {
          await poll(() => firstChunks() >= n / 4, {
            timeoutMs: 10_000,
            label: 'streams under way',
          });
          killedWithStreams = firstChunks();
          await model.process.kill();
        },
      });
      await phases.run('model-dead', { count: n });
      await model.restart();
      await phases.untilServed('restarted', 15_000);

      progress('hang before headers');
      await model.configure({ failure: { kind: 'hang-headers' } });
      await phases.run('hang', { count: n, deadlineMs: HANG_DEADLINE_MS });
      await model.configure({ failure: { kind: 'none' } });
      // The clients left at their deadline: the worker must have let go of the model too.
      const released = await pollOrGiveUp(async () => (await model.stats())['inFlight'] === 0, {
        timeoutMs: 5_000,
        intervalMs: 100,
      });
      verdict.check(
        released === true,
        'hung model requests were not aborted after their clients left',
      );
      if (released !== true) phases.hung += (await model.stats())['inFlight'] ?? 0;

      progress('garbage HTTP');
      proxy.setMode('garbage');
      await phases.run('garbage', { count: n });
      proxy.setMode('pass');

      progress('500s, fail-rate, resets, drops');
      await model.configure({ failure: { kind: 'status', status: 500 } });
      await phases.run('500s', { count: n });
      await model.configure({ failure: { kind: 'fail-rate', rate: 0.5, status: 503 } });
      await phases.run('fail-half-503', { count: n });
      await model.configure({ failure: { kind: 'reset' } });
      await phases.run('reset', { count: n });
      await model.configure({
        tokenDelayMs: 5,
        failure: { kind: 'drop-mid-stream', afterTokens: 3 },
      });
      await phases.run('drop-mid-stream', { count: n, tokens: 20 });
      await model.configure({ tokenDelayMs: 0, failure: { kind: 'none' } });
      await phases.run('recovered', { count: n });
      const trafficEnd = Date.now();

      // Every request_idx exactly once in /delete_requests/.
      const expected = phases.ranges.reduce((sum, [from, to]) => sum + (to - from), 0);
      const check =
        (await pollOrGiveUp(
          async () => {
            const result = await stack.autoscaler.check(phases.ranges);
            return result.missing === 0 || result.duplicated > 0 ? result : false;
          },
          { timeoutMs: 20_000, intervalMs: 250 },
        )) ?? (await stack.autoscaler.check(phases.ranges));
      verdict
        .figure(`${fmt.int(expected)} requests, ${phases.hung} hung`, 'hung', phases.hung)
        .figure(
          `/delete_requests/ missing ${check.missing}, duplicated ${check.duplicated}`,
          'deleteMissing',
          check.missing,
        )
        .figure(`killed with ${killedWithStreams} streams under way`)
        .figure(phases.lines.join('; '))
        .figure(
          `garbage on ${[...proxy.garbageSent.values()].reduce((a, b) => a + b, 0)} connections`,
        )
        .check(phases.hung === 0, `${phases.hung} requests hung`)
        .check(
          phases.silent.length === 0,
          `requests closed with no answer at all (${phases.silent.join(', ')}): a model that ` +
            `breaks before the first body byte must get the client a JSON 502, since nothing ` +
            `had reached it`,
        )
        .check(
          phases.oddStatuses.length === 0,
          `answers with a status outside 100-599 (${phases.oddStatuses.join(', ')}): a model's ` +
            `status no client can act on must become a JSON 502`,
        )
        .check(
          check.missing === 0,
          `${check.missing} request_idx never reported (e.g. ${check.missingSample.join(', ')})`,
        )
        .check(
          check.duplicated === 0,
          `${check.duplicated} request_idx reported twice (e.g. ${check.duplicatedSample.join(', ')})`,
        );
      if (await checkAlive(stack, verdict))
        await checkReportsConsistent(stack, verdict, trafficEnd);
      return verdict;
    } finally {
      await clients.close();
      await proxy?.close();
      await stack.close();
    }
  },
};
