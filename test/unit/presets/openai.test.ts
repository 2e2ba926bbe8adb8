import { describe, expect, it } from 'vitest';
import { LogAction, openaiWorker } from '../../../lib/index.ts';
import {
  ConfigError,
  type ResolvedHandler,
  type ResolvedWorker,
} from '../../../lib/entry-server.ts';

const engine = openaiWorker({
  name: 'vllm',
  modelLog: '/var/log/portal/vllm.log',
  modelEnv: ['VLLM_MODEL'],
  logActions: {
    onLoad: ['Application startup complete.'],
    onError: ['RuntimeError: Engine'],
    onInfo: ['"message":"Download'],
  },
});

function create(env: Record<string, string>): ResolvedWorker {
  return engine.create({ MODEL_NAME: 'org/model', ...env });
}

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    engine.create(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

function handler(worker: ResolvedWorker, route: string): ResolvedHandler {
  const found = worker.handlers.find((h) => h.route === route);
  if (found === undefined) throw new Error(`no handler ${route}`);
  return found;
}

/** What the pipeline does with a payload: validate, measure, and build the model's body. */
function run(h: ResolvedHandler, payload: unknown): { workload: number; body: unknown } {
  const parsed: unknown = h.payload.parse(payload);
  const workload = h.workload(parsed);
  if (typeof workload !== 'number') throw new Error('the OpenAI workloads are synchronous');
  return { workload, body: h.transformRequest?.(parsed) ?? parsed };
}

describe('the OpenAI preset', () => {
  it('serves completions and chat by default, benchmarking completions like the reference', () => {
    const worker = create({});
    expect(worker.handlers.map((h) => h.route)).toEqual([
      '/v1/completions',
      '/v1/chat/completions',
    ]);
    expect(worker.benchmarkHandler?.route).toBe('/v1/completions');
    expect(worker.benchmarkHandler?.benchmark).toMatchObject({ runs: 3, concurrency: 10 });
    const sample = worker.benchmarkHandler?.benchmark?.sample() as Record<string, unknown>;
    expect(sample).toMatchObject({ model: 'org/model', max_tokens: 500, temperature: 0.7 });
    expect(String(sample['prompt']).split(' ')).toHaveLength(250);
    expect(worker.handlers.every((h) => h.allowParallel && h.maxQueueTime === 600)).toBe(true);
  });

  it('stops start-up naming MODEL_NAME when no model id is set', () => {
    expect(problemsOf({}).join('\n')).toMatch(/^MODEL_NAME: required \(or VLLM_MODEL\)/);
  });

  it("takes the model id from the engine's own variable", () => {
    const worker = engine.create({ VLLM_MODEL: 'from/vllm-model' });
    const sample = worker.benchmarkHandler?.benchmark?.sample() as Record<string, unknown>;
    expect(sample['model']).toBe('from/vllm-model');
  });

  it('counts max_tokens, then max_completion_tokens, then a documented default of 500', () => {
    const chat = handler(create({}), '/v1/chat/completions');
    const messages = [{ role: 'user', content: 'hi' }];
    expect(run(chat, { messages, max_tokens: 64 }).workload).toBe(64);
    expect(run(chat, { messages, max_completion_tokens: 32 }).workload).toBe(32);
    expect(run(chat, { messages }).workload).toBe(500);
    const custom = handler(create({ DEFAULT_MAX_TOKENS: '128' }), '/v1/chat/completions');
    expect(run(custom, { messages }).workload).toBe(128);
  });

  it('accepts {"input": {...}} or the bare body, and forwards the bare body with unknown fields', () => {
    const completions = handler(create({}), '/v1/completions');
    const bare = { prompt: 'hi', max_tokens: 8, top_p: 0.9, stop: ['\n'] };
    expect(run(completions, bare).body).toEqual({ ...bare, model: 'org/model' });
    expect(run(completions, { input: bare }).body).toEqual({ ...bare, model: 'org/model' });
    expect(run(completions, { ...bare, model: 'client/choice' }).body).toMatchObject({
      model: 'client/choice',
    });
  });

  it('rejects a payload whose fields have the wrong types', () => {
    const completions = handler(create({}), '/v1/completions');
    expect(completions.payload.safeParse({ prompt: 'hi', max_tokens: 'many' }).success).toBe(false);
    expect(completions.payload.safeParse({ max_tokens: 5 }).success).toBe(false);
  });

  it('adds /v1/embeddings from OPENAI_ROUTES, weighing inputs against BENCHMARK_EMBED_CHARS', () => {
    const worker = create({
      OPENAI_ROUTES: '/v1/embeddings, /v1/completions',
      BENCHMARK_ROUTE: '/v1/embeddings',
    });
    expect(worker.handlers.map((h) => h.route)).toEqual(['/v1/embeddings', '/v1/completions']);
    const embeddings = handler(worker, '/v1/embeddings');
    expect(run(embeddings, { input: 'x'.repeat(600) }).workload).toBe(500);
    expect(run(embeddings, { input: ['x'.repeat(300), 'y'.repeat(900)] }).workload).toBe(1000);
    expect(run(embeddings, { input: 'x' }).workload).toBe(50);
    const sample = worker.benchmarkHandler?.benchmark?.sample() as Record<string, unknown>;
    expect(String(sample['input'])).toHaveLength(600);
  });

  it('lists every bad variable together', () => {
    const problems = problemsOf({
      OPENAI_ROUTES: '/v1/completions,/v1/images/generations',
      MODEL_HEALTH_ENDPOINT: 'health',
      DEFAULT_MAX_TOKENS: '-3',
    });
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toContain('OPENAI_ROUTES: unknown route "/v1/images/generations"');
    expect(problems.join('\n')).toContain('MODEL_HEALTH_ENDPOINT: must be a path');
    expect(problems.join('\n')).toContain(
      'DEFAULT_MAX_TOKENS: must be a positive integer (got "-3")',
    );
    expect(problems.join('\n')).toContain('MODEL_NAME: required');
  });

  it('refuses a benchmark route that OPENAI_ROUTES does not serve', () => {
    const problems = problemsOf({
      MODEL_NAME: 'org/model',
      OPENAI_ROUTES: '/v1/completions',
      BENCHMARK_ROUTE: '/v1/chat/completions',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^BENCHMARK_ROUTE: \/v1\/chat\/completions is not served/),
    ]);
  });

  it('takes log patterns, one per line, and the health endpoint from the environment', () => {
    const worker = create({
      MODEL_LOAD_LOG_MSG: ' ready now \n\nstill ready',
      MODEL_ERROR_LOG_MSGS: 'boom',
      MODEL_HEALTH_ENDPOINT: 'http://127.0.0.1:9/ping',
    });
    expect(worker.logActions).toEqual([
      [LogAction.ModelLoaded, 'ready now'],
      [LogAction.ModelLoaded, 'still ready'],
      [LogAction.ModelError, 'boom'],
      [LogAction.Info, '"message":"Download'],
    ]);
    expect(worker.modelHealthcheckPath).toBe('http://127.0.0.1:9/ping');
    expect(worker.modelLog).toBe('/var/log/portal/vllm.log');
    expect(create({}).modelHealthcheckPath).toBe('/health');
  });
});
