/**
 * The bench's own load generator, a separate process driven over IPC: our engine, for what wrk
 * cannot measure (time to first byte and first token of streams), and the stall test's streaming
 * clients, which time every chunk. Each job answers with distributions or samples, not raw records.
 */
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import {
  directTarget,
  distribution,
  runLoad,
  type Distribution,
} from '../lib/test-harness/index.ts';

export interface SignedFields {
  readonly cost: number;
  readonly endpoint: string;
  readonly signature: string;
  readonly url: string;
}

export interface LoadJob {
  readonly kind: 'load';
  readonly id: number;
  readonly url: string;
  readonly route: string;
  /** One payload per request, in turn: `{prompt, max_response_tokens: tokens}`. */
  readonly prompts: readonly string[];
  readonly tokens: number;
  /** 'raw' sends the payload alone (model server, nginx); otherwise a signed worker body. */
  readonly envelope: 'raw' | SignedFields;
  readonly count: number;
  readonly concurrency: number;
  readonly warmup: number;
}

export interface LoadJobResult {
  readonly id: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly firstError: string | undefined;
  readonly durationMs: number;
  readonly ttfbMs: Distribution | undefined;
  readonly ttftMs: Distribution | undefined;
  readonly totalMs: Distribution | undefined;
  readonly tokens: number;
}

/** Streaming clients in a closed loop until `gaps-stop` (or `maxSeconds`), timing every chunk. */
export interface GapsStartJob {
  readonly kind: 'gaps-start';
  readonly id: number;
  readonly url: string;
  readonly route: string;
  readonly prompts: readonly string[];
  readonly tokens: number;
  readonly envelope: 'raw' | SignedFields;
  readonly concurrency: number;
  readonly maxSeconds: number;
}

export interface GapsStopJob {
  readonly kind: 'gaps-stop';
  readonly id: number;
}

export interface GapsResult {
  readonly id: number;
  /** [epoch ms when the chunk arrived, ms since the previous chunk of the same stream]. */
  readonly gaps: readonly (readonly [number, number])[];
  /** [epoch ms when the headers arrived, ms since the request was sent]. */
  readonly ttfb: readonly (readonly [number, number])[];
  readonly streams: number;
  readonly failed: number;
  readonly firstError: string | undefined;
}

export type ClientJob = LoadJob | GapsStartJob | GapsStopJob;

let reqnum = 0;

function bodyBuilder(
  envelope: 'raw' | SignedFields,
  prompts: readonly string[],
  tokens: number,
): () => string {
  let next = 0;
  const payload = (): string =>
    `{"prompt":${JSON.stringify(prompts[next++ % prompts.length])},"max_response_tokens":${tokens}}`;
  if (envelope === 'raw') return payload;
  const head = `{"auth_data":{"cost":${envelope.cost},"endpoint":${JSON.stringify(envelope.endpoint)},"reqnum":`;
  const tail = `,"signature":${JSON.stringify(envelope.signature)},"url":${JSON.stringify(envelope.url)}},"payload":`;
  return () => {
    reqnum++;
    return `${head}${reqnum},"request_idx":${reqnum}${tail}${payload()}}`;
  };
}

async function run(job: LoadJob): Promise<LoadJobResult> {
  const build = bodyBuilder(job.envelope, job.prompts, job.tokens);
  const target = directTarget({ url: job.url, envelope: () => build() });
  const result = await runLoad({
    target,
    // The envelope builds the body; the payload here only names the route.
    plan: () => ({ route: job.route, payload: null }),
    count: job.count,
    schedule: { kind: 'closed', concurrency: job.concurrency },
    warmup: job.warmup,
    retry: { retries: 0 },
  });
  const ok = result.records.filter((r) => r.ok);
  const failure = result.records.find((r) => !r.ok);
  return {
    id: job.id,
    succeeded: ok.length,
    failed: result.records.length - ok.length,
    firstError:
      failure === undefined
        ? undefined
        : `${String(failure.cause)} ${String(failure.detail)} ${failure.sample ?? ''}`,
    durationMs: result.durationMs,
    ttfbMs: distribution(ok.flatMap((r) => (r.ttfbMs === undefined ? [] : [r.ttfbMs]))),
    ttftMs: distribution(ok.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs]))),
    totalMs: distribution(ok.map((r) => r.totalMs)),
    tokens: ok.reduce((sum, r) => sum + r.tokens, 0),
  };
}

const now = (): number => performance.timeOrigin + performance.now();

interface GapsRun {
  stop(): Promise<GapsResult>;
}

const gapRuns = new Map<number, GapsRun>();

function startGaps(job: GapsStartJob): GapsRun {
  const build = bodyBuilder(job.envelope, job.prompts, job.tokens);
  const dispatcher = new Agent({ connections: job.concurrency, keepAliveTimeout: 30_000 });
  const gaps: [number, number][] = [];
  const ttfb: [number, number][] = [];
  const deadline = Date.now() + job.maxSeconds * 1000;
  let stopping = false;
  let streams = 0;
  let failed = 0;
  let firstError: string | undefined;
  const url = `${job.url}${job.route}`;

  const client = async (): Promise<void> => {
    while (!stopping && Date.now() < deadline) {
      const sent = now();
      try {
        const response = await request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: build(),
          dispatcher,
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        });
        let last = now();
        ttfb.push([last, last - sent]);
        for await (const chunk of response.body) {
          void chunk;
          const at = now();
          gaps.push([at, at - last]);
          last = at;
        }
        if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`);
        streams++;
      } catch (error) {
        failed++;
        firstError ??= String(error);
        // A broken target must not turn this loop into a busy one.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  const clients = Array.from({ length: job.concurrency }, () => client());
  return {
    async stop() {
      stopping = true;
      await Promise.all(clients);
      await dispatcher.close();
      return { id: job.id, gaps, ttfb, streams, failed, firstError };
    },
  };
}

process.on('message', (job: ClientJob) => {
  if (job.kind === 'load') {
    run(job).then(
      (result) => process.send?.({ ok: true, id: job.id, result }),
      (error: unknown) => process.send?.({ ok: false, id: job.id, error: String(error) }),
    );
  } else if (job.kind === 'gaps-start') {
    gapRuns.set(job.id, startGaps(job));
    process.send?.({ ok: true, id: job.id, result: { id: job.id } });
  } else {
    const started = gapRuns.get(job.id);
    gapRuns.delete(job.id);
    if (started === undefined) {
      process.send?.({ ok: false, id: job.id, error: `no streaming run ${job.id}` });
      return;
    }
    started.stop().then(
      (result) => process.send?.({ ok: true, id: job.id, result }),
      (error: unknown) => process.send?.({ ok: false, id: job.id, error: String(error) }),
    );
  }
});
process.on('disconnect', () => process.exit(0));
