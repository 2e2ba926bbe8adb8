/**
 * Big bodies and slow clients. A 100 MB and a 1 GB body, each with a declared Content-Length and
 * chunked, streamed from a generator that reuses one 64 KiB block (the harness never holds a
 * body), must get 413 with the worker's RSS back near its level afterwards. Then slowloris
 * connections (headers that never end, bodies one byte at a time) must be closed by the headers
 * and request timeouts while signed clients are still served.
 */
import { connect, type Socket } from 'node:net';
import { checkAlive } from '../support/checks.ts';
import { call, LOOPBACK, pool, rawExchange, requestHead } from '../support/http.ts';
import { MB, procStats } from '../support/processes.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack, type Stack } from '../support/stack.ts';
import { pollOrGiveUp, quantile, sleep, Tally } from '../support/timing.ts';

const HEADERS_TIMEOUT_S = 2;
const REQUEST_TIMEOUT_S = 5;
const BLOCK = 64 * 1024;
/** The worker's default MAX_BODY_BYTES: what it may read of a body before refusing it. */
const MAX_BODY = 16 * MB;
/**
 * RSS may rise this much above its level while bodies are refused, and must come back within the
 * second allowance. Both are multiples of the body limit, never of the body's size: V8 and the
 * allocator keep some of what the last 16 MiB used (a dozen refused bodies plateau at about +25 MB).
 */
const PEAK_ALLOWANCE = 4 * MAX_BODY;
const AFTER_ALLOWANCE = 3 * MAX_BODY;

const BIG = [
  { label: '100 MB', bytes: 100 * MB },
  { label: '1 GB', bytes: 1024 * MB },
] as const;

/** A body of `total` bytes, as the same block over and over: a JSON prefix, then filler. */
function* bodyBlocks(total: number, chunked: boolean): Generator<Buffer> {
  const prefix = Buffer.from('{"auth_data":{},"payload":{"prompt":"');
  const filler = Buffer.alloc(BLOCK, 'a');
  const frame = (block: Buffer): Buffer =>
    chunked
      ? Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from('\r\n')])
      : block;
  yield frame(prefix);
  const framedFiller = frame(filler);
  let sent = prefix.length;
  while (sent + BLOCK <= total) {
    yield framedFiller;
    sent += BLOCK;
  }
  if (sent < total) yield frame(filler.subarray(0, total - sent));
  if (chunked) yield Buffer.from('0\r\n\r\n');
}

export const bigBodiesScenario: Scenario = {
  name: 'big-bodies',
  timeLimitMs: (quick) => (quick ? 120_000 : 240_000),
  async run({ quick, progress }) {
    const verdict = new Verdict();
    const stack = await startStack({
      name: 'big',
      workerEnv: {
        HEADERS_TIMEOUT_SECONDS: String(HEADERS_TIMEOUT_S),
        REQUEST_TIMEOUT_SECONDS: String(REQUEST_TIMEOUT_S),
      },
    });
    try {
      await bigBodies(stack, verdict, quick ? 1 : 3, progress);
      await slowClients(stack, verdict, quick, progress);
      await checkAlive(stack, verdict);
      return verdict;
    } finally {
      await stack.close();
    }
  },
};

async function bigBodies(
  stack: Stack,
  verdict: Verdict,
  rounds: number,
  progress: (message: string) => void,
): Promise<void> {
  const pid = stack.worker.process.pid;
  // Warm the worker up so its level is the one of a serving process.
  const ticket = await stack.autoscaler.route();
  const warm = pool(stack.worker.url, 4);
  for (let i = 0; i < 200; i++) {
    await call(warm, '/generate', signedBody(ticket, 70_000_000 + i, helloPayload('warm', 2)), {
      deadlineMs: 10_000,
    });
  }
  await warm.close();
  await sleep(1_000);
  const baseline = quantile(
    await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        await sleep(i * 200);
        return procStats(pid).rss;
      }),
    ),
    0.5,
  );

  const round = [
    ...BIG.flatMap((big) => [
      { ...big, chunked: false, listener: 'main' as const },
      { ...big, chunked: true, listener: 'main' as const },
    ]),
    { label: '100 MB', bytes: 100 * MB, chunked: false, listener: 'plain' as const },
  ];
  const cases = Array.from({ length: rounds }, () => round).flat();
  let peak = baseline;
  const seen = new Tally();
  const refused413Before = await stack.worker.metric('tsworker_requests_total', { status: '413' });
  const send = async (
    c: (typeof cases)[number],
    writeFirst: boolean,
  ): Promise<number | undefined> => {
    const path = c.listener === 'main' ? '/generate' : '/session/end';
    const framing: [string, string] = c.chunked
      ? ['transfer-encoding', 'chunked']
      : ['content-length', String(c.bytes)];
    const head = requestHead('POST', path, [['content-type', 'application/json'], framing]);
    const sampler = setInterval(() => {
      peak = Math.max(peak, procStats(pid).rss);
    }, 25);
    const outcome = await rawExchange(
      c.listener === 'main' ? stack.worker.port : stack.worker.httpPort,
      (function* () {
        yield head;
        yield* bodyBlocks(c.bytes, c.chunked);
      })(),
      { deadlineMs: 60_000, writeFirst },
    );
    clearInterval(sampler);
    peak = Math.max(peak, procStats(pid).rss);
    const what =
      `${c.label} ${c.chunked ? 'chunked' : 'declared'}` +
      `${c.listener === 'plain' ? ' (plain listener)' : ''}${writeFirst ? ' (write first)' : ''}`;
    progress(
      `${what}: ${String(outcome.status ?? outcome.error)} after ${fmt.mb(outcome.bytesSent)} sent, ` +
        `${fmt.ms(outcome.ms)}, RSS ${fmt.mb(procStats(pid).rss)}`,
    );
    verdict.check(outcome.ended !== 'deadline', `${what}: no answer within 60 s`);
    return outcome.status;
  };
  // A client that reads while it sends (curl) sees the 413 unless the reset wins a race.
  let mainCases = 0;
  for (const c of cases) {
    const status = await send(c, false);
    seen.add(String(status ?? 'reset'));
    if (c.listener === 'main') mainCases++;
    verdict.check(
      status === 413 || status === undefined,
      `${c.label} ${c.chunked ? 'chunked' : 'declared'} answered ${String(status)}`,
    );
  }
  const refused413 =
    (await stack.worker.metric('tsworker_requests_total', { status: '413' })) - refused413Before;
  // A client that sends its whole body before reading (Python's http.client, requests).
  const WRITE_FIRST_TRIES = 3;
  let writeFirstSaw413 = 0;
  for (let i = 0; i < WRITE_FIRST_TRIES; i++) {
    const status = await send({ ...BIG[0], chunked: false, listener: 'main' }, true);
    if (status === 413) writeFirstSaw413++;
  }
  // Memory handed back: the lowest RSS over up to 10 s, sooner when it is back near its level.
  let after = procStats(pid).rss;
  await pollOrGiveUp(
    () => {
      after = Math.min(after, procStats(pid).rss);
      return after - baseline <= 8 * MB;
    },
    { timeoutMs: 10_000, intervalMs: 250 },
  );
  verdict
    .figure(
      `big bodies: worker answered 413 to ${refused413}/${mainCases} (client saw ${seen.toString()})`,
      'bigBody413',
      `${refused413}/${mainCases}`,
    )
    .figure(
      `write-first clients saw the 413 ${writeFirstSaw413}/${WRITE_FIRST_TRIES}`,
      'writeFirst413',
      `${writeFirstSaw413}/${WRITE_FIRST_TRIES}`,
    )
    .figure(
      `RSS ${fmt.mb(baseline)}, peak ${fmt.dmb(peak - baseline)}, after ${fmt.dmb(after - baseline)}`,
    )
    .check(
      refused413 === mainCases,
      `the worker answered 413 to ${refused413} of ${mainCases} big bodies`,
    )
    .check(
      writeFirstSaw413 === WRITE_FIRST_TRIES,
      `a client that sends its whole 100 MB body before reading (as Python's http.client does) ` +
        `saw the 413 in ${writeFirstSaw413}/${WRITE_FIRST_TRIES} tries, a broken pipe otherwise: ` +
        `the worker must read and discard the rest of a refused body before closing`,
    )
    .check(
      peak - baseline <= PEAK_ALLOWANCE,
      `RSS rose ${fmt.mb(peak - baseline)} while refusing bodies (allowed ${fmt.mb(PEAK_ALLOWANCE)})`,
    )
    .check(
      after - baseline <= AFTER_ALLOWANCE,
      `RSS still ${fmt.dmb(after - baseline)} above its level 10 s later (allowed ${fmt.mb(AFTER_ALLOWANCE)})`,
    );
  verdict.data['rssBaselineMb'] = baseline / MB;
  verdict.data['rssPeakDeltaMb'] = (peak - baseline) / MB;
  verdict.data['rssAfterDeltaMb'] = (after - baseline) / MB;
}

interface Loris {
  readonly socket: Socket;
  readonly openedAt: number;
  closedAfterMs: number | undefined;
  status: number | undefined;
}

async function slowClients(
  stack: Stack,
  verdict: Verdict,
  quick: boolean,
  progress: (message: string) => void,
): Promise<void> {
  const headerCount = quick ? 500 : 5_000;
  const bodyCount = quick ? 50 : 500;
  const lorises: Loris[] = [];
  const open = (kind: 'headers' | 'body'): Promise<Loris> =>
    new Promise((resolve) => {
      const socket = connect({ port: stack.worker.port, host: LOOPBACK });
      const loris: Loris = { socket, openedAt: 0, closedAfterMs: undefined, status: undefined };
      socket.on('connect', () => {
        (loris as { openedAt: number }).openedAt = performance.now();
        socket.write(
          kind === 'headers'
            ? `POST /generate HTTP/1.1\r\nhost: ${LOOPBACK}\r\n`
            : `POST /generate HTTP/1.1\r\nhost: ${LOOPBACK}\r\ncontent-type: application/json\r\n` +
                'content-length: 100000\r\n\r\n{',
        );
        resolve(loris);
      });
      socket.on('data', (chunk: Buffer) => {
        const match = /^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1', 0, 16));
        if (match !== null) loris.status = Number(match[1]);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        loris.closedAfterMs = performance.now() - loris.openedAt;
      });
    });
  const headerKind = new Set<Loris>();
  for (let i = 0; i < headerCount + bodyCount; i += 250) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(250, headerCount + bodyCount - i) }, (_, j) => {
        const kind = i + j < headerCount ? 'headers' : 'body';
        return open(kind).then((loris) => {
          if (kind === 'headers') headerKind.add(loris);
          return loris;
        });
      }),
    );
    lorises.push(...batch);
  }
  const fdsWhileOpen = procStats(stack.worker.process.pid).fds;
  progress(`${lorises.length} slow connections open, worker holds ${fdsWhileOpen} fds`);
  // Trickle: one header line, or one body byte, per connection every 500 ms.
  const trickle = setInterval(() => {
    for (const loris of lorises) {
      if (loris.closedAfterMs !== undefined) continue;
      loris.socket.write(headerKind.has(loris) ? 'x-slow: 1\r\n' : ' ');
    }
  }, 500);
  // Signed clients are served meanwhile.
  const ticket = await stack.autoscaler.route();
  const clients = pool(stack.worker.url, 4);
  const latencies: number[] = [];
  let served = 0;
  const CLIENT_REQUESTS = 200;
  for (let i = 0; i < CLIENT_REQUESTS; i++) {
    const answer = await call(
      clients,
      '/generate',
      signedBody(ticket, 71_000_000 + i, helloPayload('served despite lorises', 2)),
      { deadlineMs: 10_000 },
    );
    if (answer.kind === 'answered' && answer.status === 200) {
      served++;
      latencies.push(answer.ms);
    }
  }
  await clients.close();
  const boundMs = (REQUEST_TIMEOUT_S + 5) * 1000;
  await pollOrGiveUp(() => lorises.every((l) => l.closedAfterMs !== undefined), {
    timeoutMs: boundMs,
    intervalMs: 100,
  });
  clearInterval(trickle);
  for (const loris of lorises) loris.socket.destroy();

  const closeTimes = (set: Loris[]): number[] =>
    set.map((l) => l.closedAfterMs ?? Number.POSITIVE_INFINITY);
  const headerLorises = lorises.filter((l) => headerKind.has(l));
  const bodyLorises = lorises.filter((l) => !headerKind.has(l));
  const headerMax = Math.max(...closeTimes(headerLorises));
  const bodyMax = Math.max(...closeTimes(bodyLorises));
  const statuses = new Tally();
  for (const loris of lorises) statuses.add(String(loris.status ?? 'closed'));
  const headerBound = (HEADERS_TIMEOUT_S + 3) * 1000;
  const bodyBound = (REQUEST_TIMEOUT_S + 3) * 1000;
  verdict
    .figure(
      `${fmt.int(headerLorises.length)} header + ${fmt.int(bodyLorises.length)} body slowloris ` +
        `closed after ≤ ${fmt.s(headerMax)} / ${fmt.s(bodyMax)} (timeouts ${HEADERS_TIMEOUT_S} s / ${REQUEST_TIMEOUT_S} s), answers ${statuses.toString()}`,
      'slowlorisCloseMaxMs',
      { headers: headerMax, body: bodyMax },
    )
    .figure(
      `signed clients meanwhile ${served}/${CLIENT_REQUESTS}, p99 ${fmt.ms(quantile(latencies, 0.99))}`,
    )
    .check(
      headerMax <= headerBound,
      `header slowloris connections open for up to ${fmt.s(headerMax)} (bound ${fmt.s(headerBound)})`,
    )
    .check(
      bodyMax <= bodyBound,
      `body slowloris connections open for up to ${fmt.s(bodyMax)} (bound ${fmt.s(bodyBound)})`,
    )
    .check(
      served === CLIENT_REQUESTS,
      `only ${served}/${CLIENT_REQUESTS} signed clients were served`,
    );
}
