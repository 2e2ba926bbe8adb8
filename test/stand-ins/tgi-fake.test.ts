/**
 * The TGI fake's fidelity to model-servers.md §7 and §10: `data:` framing without a space and
 * without `[DONE]`, TGI's `{error, error_type}` with 422/424/429, the x-* headers, a port that
 * refuses while loading, the JSON log lines Vast keys on, the knobs, and a client that leaves.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FakeServer } from '../../src/stand-ins/fakes/common.ts';
import { FAKES } from '../../src/stand-ins/fakes/index.ts';
import { startTgiFake } from '../../src/stand-ins/fakes/tgi.ts';
import type { TgiFakeOptions } from '../../src/stand-ins/fakes/tgi.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const FAST = { tokensPerSecondPerSequence: 50_000, tokensPerSecond: 500_000 };
const CONNECTED = '"message":"Connected","target":"text_generation_router::server"';

let dir: string;
const servers: FakeServer[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tgi-fake-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

let logCount = 0;
async function start(options: TgiFakeOptions = {}): Promise<FakeServer & { log: string }> {
  const logFile = join(dir, `tgi-${logCount++}.log`);
  const server = await startTgiFake({ logFile, batching: FAST, ...options });
  servers.push(server);
  if (!options.loadDelayMs && !options.failLoad) await waitFor(() => server.loaded);
  return Object.assign(server, { log: logFile });
}

const readLog = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

const control = (server: FakeServer, command: unknown) =>
  post(`${server.url}/_control`, command).then((r) => expect(r.status).toBe(200));

/** Splits a TGI stream into its events; every block must be `data:{json}` with no space. */
function events(text: string): Record<string, unknown>[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .filter((block) => block !== ':')
    .map((block) => {
      expect(block.startsWith('data:{')).toBe(true);
      return JSON.parse(block.slice('data:'.length)) as Record<string, unknown>;
    });
}

const generate = (server: FakeServer, parameters: Record<string, unknown>, inputs = 'Hi there') =>
  post(`${server.url}/generate`, { inputs, parameters });
const generateStream = (server: FakeServer, parameters: Record<string, unknown>) =>
  post(`${server.url}/generate_stream`, { inputs: 'Hi there', parameters });

async function refused(url: string): Promise<boolean> {
  try {
    await request(`${url}/health`);
    return false;
  } catch (error) {
    return (error as { code?: string }).code === 'ECONNREFUSED';
  }
}

describe('/generate', () => {
  it('answers only generated_text unless details are asked for, with the x-* headers', async () => {
    const server = await start();
    const response = await generate(server, { max_new_tokens: 7 }, 'What is Deep Learning?');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/json');
    const body = response.json() as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['generated_text']);
    expect(typeof body['generated_text']).toBe('string');
    expect(response.headers['x-generated-tokens']).toBe('7');
    expect(response.headers['x-prompt-tokens']).toBe('6');
    expect(response.headers['x-compute-characters']).toBe('22');
    expect(response.headers['x-compute-type']).toBe('gpu+optimized');
    for (const name of [
      'x-compute-time',
      'x-total-time',
      'x-validation-time',
      'x-queue-time',
      'x-inference-time',
      'x-time-per-token',
    ]) {
      expect(Number.isFinite(Number(response.headers[name])), name).toBe(true);
    }
  });

  it('adds details with finish_reason, generated_tokens, seed, prefill and tokens when asked', async () => {
    const server = await start();
    const response = await generate(server, { max_new_tokens: 4, details: true });
    const body = response.json() as {
      generated_text: string;
      details: Record<string, unknown> & { tokens: { text: string }[] };
    };
    expect(Object.keys(body.details)).toEqual([
      'finish_reason',
      'generated_tokens',
      'seed',
      'prefill',
      'tokens',
    ]);
    expect(body.details).toMatchObject({
      finish_reason: 'length',
      generated_tokens: 4,
      seed: null,
      prefill: [],
    });
    expect(body.details.tokens).toHaveLength(4);
    for (const token of body.details.tokens) {
      expect(Object.keys(token)).toEqual(['id', 'text', 'logprob', 'special']);
    }
    expect(body.details.tokens.map((t) => t.text).join('')).toBe(body.generated_text);
  });

  it('reports a seed when sampling, prepends the prompt for return_full_text, and stops at a stop sequence', async () => {
    const server = await start();
    const sampled = (
      await generate(server, { max_new_tokens: 2, seed: 42, temperature: 0.7, details: true })
    ).json();
    expect(sampled).toMatchObject({ details: { seed: 42 } });

    const full = (
      await generate(server, { max_new_tokens: 3, return_full_text: true }, 'Say:')
    ).json() as {
      generated_text: string;
    };
    const plain = (await generate(server, { max_new_tokens: 3 }, 'Say:')).json() as {
      generated_text: string;
    };
    expect(full.generated_text).toBe(`Say:${plain.generated_text}`);

    const long = (await generate(server, { max_new_tokens: 6 })).json() as {
      generated_text: string;
    };
    const stopWord = long.generated_text.split(' ')[2] ?? '';
    const stopped = (
      await generate(server, { max_new_tokens: 6, stop: [stopWord], details: true })
    ).json();
    expect(stopped).toMatchObject({
      details: { finish_reason: 'stop_sequence', generated_tokens: 3 },
    });
  });
});

describe('/generate_stream', () => {
  it('frames each token as data:{json} with no space, the last event carrying generated_text, and no [DONE]', async () => {
    const server = await start();
    const response = await generateStream(server, { max_new_tokens: 5 });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(response.headers['x-accel-buffering']).toBe('no');
    expect(response.text).not.toContain('data: ');
    expect(response.text).not.toContain('[DONE]');
    const list = events(response.text);
    expect(list).toHaveLength(5);
    list.forEach((event, i) => {
      expect(Object.keys(event)).toEqual(['index', 'token', 'generated_text', 'details']);
      expect(event['index']).toBe(i + 1);
      expect(Object.keys(event['token'] as object)).toEqual(['id', 'text', 'logprob', 'special']);
      expect(event['details']).toBeNull();
      if (i < 4) expect(event['generated_text']).toBeNull();
    });
    const text = list.map((e) => (e['token'] as { text: string }).text).join('');
    expect(list[4]?.['generated_text']).toBe(text);
  });

  it('puts the stream details on the last event only when details are asked for', async () => {
    const server = await start();
    const list = events((await generateStream(server, { max_new_tokens: 3, details: true })).text);
    expect(list.slice(0, 2).every((e) => e['details'] === null)).toBe(true);
    expect(list[2]?.['details']).toEqual({
      finish_reason: 'length',
      generated_tokens: 3,
      seed: null,
      input_length: 2,
    });
  });

  it('sends the keep-alive comment while a generation waits', async () => {
    const server = await start({ keepAliveMs: 10 });
    await control(server, { hold: true });
    const call = postStreaming(`${server.url}/generate_stream`, {
      inputs: 'Hi',
      parameters: { max_new_tokens: 2 },
    });
    await waitFor(() => call.chunks.join('').includes(':\n\n'), { label: 'keep-alive comment' });
    await control(server, { hold: false });
    const list = events(await call.done);
    expect(list).toHaveLength(2);
  });
});

describe('errors', () => {
  it('answers 422 validation in TGI shape for a wrongly typed or zero max_new_tokens', async () => {
    const server = await start();
    const typed = await generate(server, { max_new_tokens: 'ten' });
    expect(typed.status).toBe(422);
    expect(typed.json()).toEqual({
      error: expect.stringContaining(
        'parameters.max_new_tokens: invalid type: string "ten", expected u32',
      ),
      error_type: 'validation',
    });
    const negative = await generate(server, { max_new_tokens: -1 });
    expect(negative.status).toBe(422);
    expect((negative.json() as { error: string }).error).toContain('max_new_tokens');

    const zero = await generate(server, { max_new_tokens: 0 });
    expect(zero.status).toBe(422);
    expect(zero.json()).toEqual({
      error: 'Input validation error: `max_new_tokens` must be strictly positive',
      error_type: 'validation',
    });
    const missing = await post(`${server.url}/generate`, { parameters: { max_new_tokens: 3 } });
    expect(missing.status).toBe(422);
    expect((missing.json() as { error: string }).error).toContain('missing field `inputs`');

    const temperature = await generate(server, { max_new_tokens: 3, temperature: 0 });
    expect(temperature.json()).toEqual({
      error: 'Input validation error: `temperature` must be strictly positive',
      error_type: 'validation',
    });
  });

  it('reports a validation error inside a 200 stream as one error event, as TGI does', async () => {
    const server = await start();
    const response = await generateStream(server, { max_new_tokens: 0 });
    expect(response.status).toBe(200);
    expect(events(response.text)).toEqual([
      {
        error: 'Input validation error: `max_new_tokens` must be strictly positive',
        error_type: 'validation',
      },
    ]);
  });

  it('answers 429 overloaded when more than max_concurrent_requests are in flight', async () => {
    const server = await start({ maxConcurrentRequests: 2 });
    await control(server, { hold: true });
    const held = [1, 2].map(() =>
      postStreaming(`${server.url}/generate_stream`, {
        inputs: 'Hi',
        parameters: { max_new_tokens: 3 },
      }),
    );
    await Promise.all(held.map((call) => call.headers));
    await waitFor(() => server.stats.inFlight === 2);

    const refusedJson = await generate(server, { max_new_tokens: 3 });
    expect(refusedJson.status).toBe(429);
    expect(refusedJson.json()).toEqual({ error: 'Model is overloaded', error_type: 'overloaded' });
    const refusedStream = await generateStream(server, { max_new_tokens: 3 });
    expect(refusedStream.status).toBe(200);
    expect(events(refusedStream.text)).toEqual([
      { error: 'Model is overloaded', error_type: 'overloaded' },
    ]);
    expect(server.stats.overloaded).toBe(2);

    await control(server, { hold: false });
    for (const call of held) expect(events(await call.done)).toHaveLength(3);
    expect((await generate(server, { max_new_tokens: 3 })).status).toBe(200);
  });

  it('answers an injected error in TGI shape with its status, and as an event in a stream', async () => {
    const server = await start();
    await control(server, { error: { status: 424 } });
    const failed = await generate(server, { max_new_tokens: 3 });
    expect(failed.status).toBe(424);
    expect(failed.json()).toEqual({
      error: expect.stringMatching(/^Request failed during generation: /),
      error_type: 'generation',
    });
    const streamed = await generateStream(server, { max_new_tokens: 3 });
    expect(streamed.status).toBe(200);
    expect(events(streamed.text)).toEqual([failed.json()]);

    await control(server, { error: { status: 429 } });
    expect((await generate(server, { max_new_tokens: 3 })).json()).toEqual({
      error: 'Model is overloaded',
      error_type: 'overloaded',
    });
    await control(server, { error: { status: 422, message: 'custom' } });
    const custom = await generate(server, { max_new_tokens: 3 });
    expect(custom.status).toBe(422);
    expect(custom.json()).toEqual({ error: 'custom', error_type: 'validation' });

    await control(server, { error: null });
    expect((await generate(server, { max_new_tokens: 3 })).status).toBe(200);
  });

  it('answers malformed JSON 400 and a body not declared JSON 415, both in TGI shape', async () => {
    const server = await start();
    const malformed = await post(`${server.url}/generate`, '{"inputs":');
    expect(malformed.status).toBe(400);
    expect(malformed.json()).toMatchObject({ error_type: 'validation' });
    const plain = await post(`${server.url}/generate`, '{"inputs":"x"}', {
      'content-type': 'text/plain',
    });
    expect(plain.status).toBe(415);
  });
});

describe('health, info and the load phase', () => {
  it('refuses connections while loading and logs Connected only once the port serves', async () => {
    const server = await start({ loadDelayMs: 800 });
    expect(await refused(server.url)).toBe(true);
    const log = readLog(server.log);
    expect(log).toContain('Starting check and download process for');
    expect(log).toContain('"message":"Download');
    expect(log).not.toContain(CONNECTED);
    // Whenever the Connected line is in the log, the port must already answer.
    await waitFor(
      async () => {
        if (!readLog(server.log).includes(CONNECTED)) return false;
        return (await get(`${server.url}/health`)).status === 200;
      },
      { label: 'Connected line and a serving port' },
    );
    const lines = readLog(server.log).trimEnd().split('\n');
    const order = [
      'Starting check and download process',
      'Successfully downloaded weights',
      'Waiting for shard to be ready...',
      'Shard ready in',
      'Starting Webserver',
      CONNECTED,
    ].map((needle) => lines.findIndex((line) => line.includes(needle)));
    expect(order.every((index) => index !== -1)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    const connected = JSON.parse(lines.at(-1) ?? '') as Record<string, unknown>;
    expect(connected).toMatchObject({
      level: 'INFO',
      message: 'Connected',
      target: 'text_generation_router::server',
      filename: 'router/src/server.rs',
    });
    expect(lines.at(-1)).toContain('"message":"Connected","target":"text_generation_router');
  });

  it('writes the shard failure and Error: ShardCannotStart instead of loading when the load fails', async () => {
    const server = await start({ failLoad: true });
    await waitFor(() => readLog(server.log).includes('Error: ShardCannotStart'));
    const lines = readLog(server.log).trimEnd().split('\n');
    expect(lines.at(-1)).toBe('Error: ShardCannotStart');
    expect(lines.some((line) => line.includes('Shard complete standard error output'))).toBe(true);
    expect(readLog(server.log)).not.toContain(CONNECTED);
    expect(await refused(server.url)).toBe(true);
  });

  it('answers /health 200 empty, 503 in TGI shape while unhealthy, and /info with the model id', async () => {
    const server = await start({ modelId: 'org/model-7b', maxConcurrentRequests: 9 });
    const healthy = await get(`${server.url}/health`);
    expect(healthy.status).toBe(200);
    expect(healthy.text).toBe('');
    await control(server, { healthy: false });
    const sick = await get(`${server.url}/health`);
    expect(sick.status).toBe(503);
    expect(sick.json()).toEqual({ error: 'unhealthy', error_type: 'healthcheck' });
    const info = (await get(`${server.url}/info`)).json();
    expect(info).toMatchObject({
      model_id: 'org/model-7b',
      max_concurrent_requests: 9,
      router: 'text-generation-router',
    });
    expect((await get(`${server.url}/generate`)).status).toBe(405);
    expect((await get(`${server.url}/v2/nothing`)).status).toBe(404);
  });

  it('appends the fatal lines on the fatal knob and stops serving on the crash knob', async () => {
    const server = await start();
    await control(server, { fatal: true });
    expect(readLog(server.log).trimEnd().split('\n').at(-1)).toBe('Error: ShardCannotStart');
    await control(server, { crash: true });
    await waitFor(() => refused(server.url), { label: 'port closed after crash' });
  });
});

describe('a client that leaves', () => {
  it('cancels the generation, counts the abort and frees the concurrency permit', async () => {
    const server = await start({
      maxConcurrentRequests: 1,
      batching: { tokensPerSecondPerSequence: 200, tokensPerSecond: 200 },
    });
    const call = postStreaming(`${server.url}/generate_stream`, {
      inputs: 'Hi',
      parameters: { max_new_tokens: 5000 },
    });
    await waitFor(() => call.chunks.join('').includes('"index":1,'), { label: 'first token' });
    call.disconnect();
    await waitFor(() => server.stats.aborted === 1, { label: 'abort counted' });
    expect(server.stats.inFlight).toBe(0);
    // With one permit, this succeeds only if the left request gave its permit back.
    const next = await generate(server, { max_new_tokens: 2 });
    expect(next.status).toBe(200);
  });
});

describe('registry and program', () => {
  it('is registered as the tgi fake', () => {
    expect(FAKES['tgi']).toBeTypeOf('function');
  });

  it('runs as a program, printing where it listens and serving the MODEL_ID', async () => {
    const script = fileURLToPath(new URL('../../src/stand-ins/fakes/tgi.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, MODEL_PORT: '0', MODEL_ID: 'org/program-model' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      child.stdout.setEncoding('utf8');
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: string) => {
          out += chunk;
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line !== undefined) resolve((JSON.parse(line) as { url: string }).url);
        });
        child.once('exit', () => reject(new Error(`exited before listening: ${out}`)));
      });
      const info = await waitFor(async () => {
        const response = await get(`${url}/info`);
        return response.status === 200 ? response.json() : false;
      });
      expect(info).toMatchObject({ model_id: 'org/program-model' });
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});
