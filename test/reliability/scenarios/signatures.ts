/**
 * Forged and replayed signatures. Current mode (only `url` is signed): forged signatures of every
 * shape get 401, a replay is accepted (the protocol cannot tell), and forged bodies carrying a
 * 3 MB prompt never reach the tokenizer (the worker's CPU per forged body stays small while
 * signed clients are served). Legacy mode (AUTH_MODE=legacy, every field signed): an exact replay
 * and a reqnum older than the window get 401, and so does any field changed after signing.
 */
import { randomBytes } from 'node:crypto';
import { call, pool } from '../support/http.ts';
import { procStats } from '../support/processes.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack, type Ticket } from '../support/stack.ts';
import { quantile, runPool, Tally } from '../support/timing.ts';

const IDX_BASE = 4_000_000;
const DEADLINE_MS = 15_000;
/** A forged body must cost the worker far less than tokenizing its 3 MB prompt (~3 s). */
const FORGED_CPU_BOUND_MS = 100;

function flipBit(signature: string, bit: number): string {
  const bytes = Buffer.from(signature, 'base64');
  const index = (bit >> 3) % bytes.length;
  bytes[index] = (bytes[index] ?? 0) ^ (1 << (bit & 7));
  return bytes.toString('base64');
}

/** The signature with two different characters swapped: same length and alphabet, other bytes. */
function swapTwo(signature: string, seed: number): string {
  const chars = [...signature];
  const i = seed % chars.length;
  let j = (i + 1) % chars.length;
  while (chars[j] === chars[i] && j !== i) j = (j + 1) % chars.length;
  [chars[i], chars[j]] = [chars[j] ?? '', chars[i] ?? ''];
  return chars.join('');
}

/** A prompt of `bytes` characters of distinct words, which no token cache helps with. */
function distinctWords(bytes: number): string {
  const words: string[] = [];
  let length = 0;
  for (let i = 0; length < bytes; i++) {
    const word = `w${((i * 2_654_435_761) % 4_294_967_296).toString(36)}`;
    words.push(word);
    length += word.length + 1;
  }
  return words.join(' ');
}

export const signaturesScenario: Scenario = {
  name: 'signatures',
  timeLimitMs: (quick) => (quick ? 120_000 : 240_000),
  async run({ quick, progress }) {
    const verdict = new Verdict();
    await currentMode(verdict, quick, progress);
    await legacyMode(verdict, quick, progress);
    return verdict;
  },
};

async function currentMode(
  verdict: Verdict,
  quick: boolean,
  progress: (message: string) => void,
): Promise<void> {
  const stack = await startStack({ name: 'signatures' });
  const clients = pool(stack.worker.url, 16);
  try {
    const ticket = await stack.autoscaler.route();
    let idx = IDX_BASE;
    const forgeries: ((t: Ticket, i: number) => Ticket)[] = [
      (t) => ({ ...t, signature: randomBytes(256).toString('base64') }),
      (t, i) => ({ ...t, signature: flipBit(t.signature, i) }),
      (t, i) => ({ ...t, signature: t.signature.slice(0, i % t.signature.length) }),
      (t, i) => ({ ...t, url: `${t.url}/${i}` }),
      (t) => ({ ...t, signature: '' }),
      (t, i) => ({ ...t, signature: swapTwo(t.signature, i) }),
      (t) => ({ ...t, signature: t.signature.replaceAll('A', 'B') }),
    ];
    const perKind = quick ? 30 : 300;
    const statuses = new Tally();
    await runPool(forgeries.length * perKind, 16, async (i) => {
      const forged = forgeries[i % forgeries.length]?.(ticket, i) ?? ticket;
      const answer = await call(
        clients,
        '/generate',
        signedBody(forged, idx++, helloPayload('forged', 2)),
        { deadlineMs: DEADLINE_MS },
      );
      statuses.add(answer.kind === 'answered' ? String(answer.status) : answer.kind);
    });
    const forgedTotal = forgeries.length * perKind;
    const forged401 = statuses.get(401);

    // A replay in the current mode: the same body twice; the protocol signs only the url.
    const replayBody = signedBody(ticket, idx++, helloPayload('replayed', 2));
    const replays = await Promise.all(
      [0, 1].map(() => call(clients, '/generate', replayBody, { deadlineMs: DEADLINE_MS })),
    );
    const replaysAccepted = replays.filter((r) => r.kind === 'answered' && r.status === 200).length;

    // Under load: forged 3 MB prompts next to signed clients.
    progress('forged 3 MB prompts under load');
    const bigPrompt = helloPayload(distinctWords(3 * 1024 * 1024), 2);
    const forgedBig = signedBody(
      { ...ticket, signature: flipBit(ticket.signature, 7) },
      0,
      bigPrompt,
    );
    const SIGNED = quick ? 20 : 100;
    const pid = stack.worker.process.pid;
    const cpuBefore = procStats(pid).cpuMs;
    const latencies: number[] = [];
    let served = 0;
    let signedDone = false;
    let forgedSent = 0;
    const bigStatuses = new Tally();
    // Forged 3 MB bodies, 4 at a time, for as long as the signed clients run (and at most 400).
    const forgedRun = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!signedDone && forgedSent < 400) {
          forgedSent++;
          const answer = await call(clients, '/generate', forgedBig, { deadlineMs: DEADLINE_MS });
          bigStatuses.add(answer.kind === 'answered' ? String(answer.status) : answer.kind);
        }
      }),
    );
    for (let i = 0; i < SIGNED; i++) {
      const answer = await call(
        clients,
        '/generate',
        signedBody(ticket, idx++, helloPayload('signed under load', 2)),
        { deadlineMs: DEADLINE_MS },
      );
      if (answer.kind === 'answered' && answer.status === 200) {
        served++;
        latencies.push(answer.ms);
      }
    }
    signedDone = true;
    await forgedRun;
    const FORGED_BIG = forgedSent;
    const cpuPerForged = (procStats(pid).cpuMs - cpuBefore) / FORGED_BIG;

    verdict
      .figure(
        `current: ${forged401}/${forgedTotal} forged → 401`,
        'forged401',
        `${forged401}/${forgedTotal}`,
      )
      .figure(`replay accepted ${replaysAccepted}/2 (by design: only url is signed)`)
      .figure(
        `${FORGED_BIG} forged 3 MB prompts ${bigStatuses.toString()}, worker CPU ${fmt.ms(cpuPerForged)} each; ` +
          `signed meanwhile ${served}/${SIGNED}, p50 ${fmt.ms(quantile(latencies, 0.5))}, p99 ${fmt.ms(quantile(latencies, 0.99))}`,
        'forgedBigCpuMs',
        cpuPerForged,
      )
      .check(forged401 === forgedTotal, `forged signatures: ${statuses.toString()}`)
      .check(bigStatuses.get(401) === FORGED_BIG, `forged 3 MB prompts: ${bigStatuses.toString()}`)
      .check(
        cpuPerForged <= FORGED_CPU_BOUND_MS,
        `a forged 3 MB prompt cost the worker ${fmt.ms(cpuPerForged)} of CPU (bound ${FORGED_CPU_BOUND_MS} ms): tokenized?`,
      )
      .check(served === SIGNED, `signed requests under load: ${served}/${SIGNED} served`);
  } finally {
    await clients.close();
    await stack.close();
  }
}

async function legacyMode(
  verdict: Verdict,
  quick: boolean,
  progress: (message: string) => void,
): Promise<void> {
  const stack = await startStack({ name: 'signatures-legacy', authMode: 'legacy' });
  const clients = pool(stack.worker.url, 8);
  try {
    const body = (ticket: Ticket): string =>
      JSON.stringify({ auth_data: ticket, payload: { prompt: 'legacy', max_response_tokens: 2 } });
    const send = async (text: string): Promise<string> => {
      const answer = await call(clients, '/generate', text, { deadlineMs: DEADLINE_MS });
      return answer.kind === 'answered' ? String(answer.status) : answer.kind;
    };
    const rounds = quick ? 20 : 100;
    const fresh = new Tally();
    const replayed = new Tally();
    const forged = new Tally();
    for (let i = 0; i < rounds; i++) {
      const ticket = await stack.autoscaler.route(3);
      fresh.add(await send(body(ticket)));
      replayed.add(await send(body(ticket)));
      forged.add(await send(body({ ...ticket, cost: ticket.cost + 1 })));
      forged.add(await send(body({ ...ticket, reqnum: ticket.reqnum + 1_000_000 })));
      forged.add(await send(body({ ...ticket, signature: flipBit(ticket.signature, i) })));
    }
    // A reqnum older than the window (100 below the highest accepted), never sent before.
    progress('legacy: an old reqnum');
    const old = await stack.autoscaler.route(3);
    for (let i = 0; i < 150; i++) await stack.autoscaler.route(3);
    const newest = await stack.autoscaler.route(3);
    const newestStatus = await send(body(newest));
    const oldStatus = await send(body(old));
    verdict
      .figure(
        `legacy: fresh ${fresh.toString()}, replayed ${replayed.toString()}, forged ${forged.toString()}, ` +
          `reqnum ${newest.reqnum - old.reqnum} behind → ${oldStatus}`,
        'legacy',
        {
          fresh: fresh.toString(),
          replayed: replayed.toString(),
          forged: forged.toString(),
          oldReqnum: oldStatus,
        },
      )
      .check(fresh.get(200) === rounds, `legacy: fresh tickets ${fresh.toString()}`)
      .check(
        replayed.get(401) === rounds,
        `legacy: replays ${replayed.toString()} (all should be 401)`,
      )
      .check(
        forged.get(401) === rounds * 3,
        `legacy: forged ${forged.toString()} (all should be 401)`,
      )
      .check(
        newestStatus === '200' && oldStatus === '401',
        `legacy: newest ${newestStatus}, old reqnum ${oldStatus}`,
      );
  } finally {
    await clients.close();
    await stack.close();
  }
}
