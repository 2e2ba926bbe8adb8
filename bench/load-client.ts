/**
 * The bench's own load generator, a separate process driven over IPC: our engine, for what wrk
 * cannot measure (time to first byte and first token of streams) and for exact request counts
 * (the RSS runs). Each job answers with distributions, not raw records.
 */
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
  readonly id: number;
  readonly url: string;
  readonly route: string;
  readonly payload: unknown;
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

let reqnum = 0;

async function run(job: LoadJob): Promise<LoadJobResult> {
  const signed = job.envelope === 'raw' ? undefined : job.envelope;
  const head =
    signed === undefined
      ? ''
      : `{"auth_data":{"cost":${signed.cost},"endpoint":${JSON.stringify(signed.endpoint)},"reqnum":`;
  const tail =
    signed === undefined
      ? ''
      : `,"signature":${JSON.stringify(signed.signature)},"url":${JSON.stringify(signed.url)}},"payload":`;
  const target = directTarget({
    url: job.url,
    envelope:
      signed === undefined
        ? 'raw'
        : (context) => {
            reqnum++;
            return `${head}${reqnum},"request_idx":${reqnum}${tail}${context.payloadJson}}`;
          },
  });
  const result = await runLoad({
    target,
    plan: () => ({ route: job.route, payload: job.payload }),
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

process.on('message', (job: LoadJob) => {
  run(job).then(
    (result) => process.send?.({ ok: true, result }),
    (error: unknown) => process.send?.({ ok: false, id: job.id, error: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
