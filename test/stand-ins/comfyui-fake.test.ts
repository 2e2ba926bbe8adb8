/**
 * The ComfyUI fake's fidelity to model-servers.md §8 and §10: the API wrapper's Result and its
 * statuses, the SSE progress stream ending in `final_result`, one job at a time, 503 with
 * Retry-After when the queue is full, /health waiting for ComfyUI, ComfyUI's /system_stats, the
 * BACKENDS_READY line written only once both answer, the fatal lines, and a client that leaves.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startComfyUIFake } from '../../src/stand-ins/fakes/comfyui.ts';
import type { ComfyUIFake, ComfyUIFakeOptions } from '../../src/stand-ins/fakes/comfyui.ts';
import { FAKES } from '../../src/stand-ins/fakes/index.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const READY_LINE = 'INFO:main:BACKENDS_READY: 1 backend(s) reachable, ready to serve';

let dir: string;
const fakes: ComfyUIFake[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'comfyui-fake-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

let logCount = 0;
async function start(options: ComfyUIFakeOptions = {}): Promise<ComfyUIFake & { log: string }> {
  const logFile = join(dir, `wrapper-${logCount++}.log`);
  const fake = await startComfyUIFake({ logFile, msPerStep: 0.5, backendPollMs: 5, ...options });
  fakes.push(fake);
  return Object.assign(fake, { log: logFile });
}

async function startReady(
  options: ComfyUIFakeOptions = {},
): Promise<ComfyUIFake & { log: string }> {
  const fake = await start(options);
  await fake.whenBackendsReady();
  return fake;
}

const readLog = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

const control = (fake: ComfyUIFake, command: unknown) =>
  post(`${fake.url}/_control`, command).then((r) => expect(r.status).toBe(200));

const text2image = (modifications: Record<string, unknown> = {}, extra: object = {}) => ({
  input: {
    modifier: 'Text2Image',
    modifications: {
      prompt: 'a lighthouse at dusk',
      width: 512,
      height: 512,
      steps: 4,
      ...modifications,
    },
    ...extra,
  },
});

const queueInfo = async (fake: ComfyUIFake) =>
  (await get(`${fake.url}/queue-info`)).json() as { generation_queue_size: number };

const resultOf = async (fake: ComfyUIFake, id: string) => {
  const response = await get(`${fake.url}/result/${id}`);
  return { status: response.status, body: response.json() as Record<string, unknown> };
};

/** Splits an SSE body into its events; every block must be `data: {json}`. */
function sseEvents(text: string): Record<string, unknown>[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((block) => {
      expect(block.startsWith('data: ')).toBe(true);
      return JSON.parse(block.slice('data: '.length)) as Record<string, unknown>;
    });
}

describe('the API wrapper', () => {
  it('answers /generate/sync with a completed Result listing the saved image', async () => {
    const fake = await startReady();
    const response = await post(
      `${fake.url}/generate/sync`,
      text2image({}, { request_id: 'job-1' }),
    );
    expect(response.status).toBe(200);
    const result = response.json() as Record<string, unknown>;
    expect(Object.keys(result)).toEqual([
      'id',
      'message',
      'status',
      'comfyui_response',
      'output',
      'timings',
    ]);
    expect(result).toMatchObject({
      id: 'job-1',
      status: 'completed',
      message: 'Processing complete.',
      comfyui_response: {},
    });
    const output = result['output'] as Record<string, unknown>[];
    expect(output).toHaveLength(1);
    expect(output[0]).toEqual({
      filename: expect.stringMatching(/^image_\d{5}_\.png$/) as unknown,
      local_path: expect.stringMatching(
        /^\/workspace\/ComfyUI\/output\/job-1\/image_\d{5}_\.png$/,
      ) as unknown,
      type: 'output',
      subfolder: '',
      node_id: '9',
      output_type: 'images',
    });
    expect(Object.keys(result['timings'] as object)).toEqual([
      'queued_at_ms',
      'preprocess_ms',
      'generation_ms',
      'postprocess_ms',
      'completed_at_ms',
      'total_ms',
    ]);
  });

  it('inlines each output as base64 when the input asks for it', async () => {
    const fake = await startReady();
    const response = await post(
      `${fake.url}/generate/sync`,
      text2image({}, { return_outputs_as_base64: true }),
    );
    const output = (response.json() as { output: Record<string, unknown>[] }).output;
    expect(output[0]).toMatchObject({ mimetype: 'image/png' });
    expect(
      Buffer.from(output[0]?.['data'] as string, 'base64')
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
  });

  it('gives one output per save node and latent batch of a workflow_json', async () => {
    const fake = await startReady();
    const workflow = {
      '3': { class_type: 'KSampler', inputs: { steps: 2, seed: 1 } },
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 2 } },
      '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'runs/cat', images: ['8', 0] } },
    };
    const response = await post(`${fake.url}/generate/sync`, {
      input: { workflow_json: workflow },
    });
    expect(response.status).toBe(200);
    const output = (response.json() as { output: Record<string, unknown>[] }).output;
    expect(output).toHaveLength(2);
    expect(output[0]).toMatchObject({ subfolder: 'runs', node_id: '9' });
    expect(output[0]?.['filename']).toMatch(/^cat_\d{5}_\.png$/);
  });

  it('fails a workflow_json that ComfyUI would refuse with a 500 failed Result', async () => {
    const fake = await startReady();
    const response = await post(`${fake.url}/generate/sync`, {
      input: { workflow_json: { '1': { inputs: {} } } },
    });
    expect(response.status).toBe(500);
    expect(response.json()).toMatchObject({
      status: 'failed',
      message: 'Generation failed: ComfyUI node errors: {}',
      output: [],
    });
  });

  it('fails an unknown modifier in preprocessing with a 500 failed Result', async () => {
    const fake = await startReady();
    const response = await post(`${fake.url}/generate/sync`, {
      input: { modifier: 'Upscale', modifications: {} },
    });
    expect(response.status).toBe(500);
    expect(response.json()).toMatchObject({
      status: 'failed',
      message: 'Preprocessing failed: Unknown modifier: Upscale',
    });
  });

  it('rejects invalid JSON and invalid inputs with 400 and FastAPI details', async () => {
    const fake = await startReady();
    const broken = await post(`${fake.url}/generate/sync`, '{"input": ');
    expect(broken.status).toBe(400);
    expect(broken.json()).toMatchObject({ detail: [{ type: 'json_invalid' }] });

    const neither = await post(`${fake.url}/generate/sync`, { input: {} });
    expect(neither.status).toBe(400);
    expect(neither.json()).toMatchObject({
      detail: [
        {
          loc: ['body', 'input'],
          msg: 'Value error, Must provide either workflow_json OR modifier',
        },
      ],
    });

    const both = await post(`${fake.url}/generate/sync`, {
      input: { modifier: 'Text2Image', workflow_json: { '1': {} } },
    });
    expect(both.status).toBe(400);

    const missing = await post(`${fake.url}/generate/sync`, { prompt: 'bare' });
    expect(missing.status).toBe(400);
    expect(missing.json()).toMatchObject({ detail: [{ type: 'missing', loc: ['body', 'input'] }] });
  });

  it('answers an injected error as a failed Result with that status', async () => {
    const fake = await startReady();
    await control(fake, { error: { status: 500, message: 'CUDA out of memory' } });
    const response = await post(`${fake.url}/generate/sync`, text2image());
    expect(response.status).toBe(500);
    expect(response.json()).toMatchObject({
      status: 'failed',
      message: 'Generation failed: CUDA out of memory',
    });
    await control(fake, { error: null });
    expect((await post(`${fake.url}/generate/sync`, text2image())).status).toBe(200);
  });

  it('fails a job as an upstream error (502) when ComfyUI is down at its turn', async () => {
    const fake = await startReady();
    await fake.comfyui.stop();
    const response = await post(`${fake.url}/generate/sync`, text2image());
    expect(response.status).toBe(502);
    expect((response.json() as { message: string }).message).toMatch(
      /^Generation failed: Failed to post workflow after 5 attempts: Cannot connect to host/,
    );
  });

  it('accepts POST /generate with 202 and a queued Result, then serves it at /result/{id}', async () => {
    const fake = await startReady();
    const response = await post(`${fake.url}/generate`, text2image({}, { request_id: 'later' }));
    expect(response.status).toBe(202);
    expect(response.json()).toMatchObject({ id: 'later', status: 'pending', output: [] });
    const done = await waitFor(async () => {
      const result = await resultOf(fake, 'later');
      return result.body['status'] === 'completed' ? result : undefined;
    });
    expect(done.status).toBe(200);
    expect(done.body['output']).toHaveLength(1);
    expect((await resultOf(fake, 'nobody')).status).toBe(404);
  });
});

describe('the SSE stream', () => {
  it('sends progress events, then final_result carrying the Result', async () => {
    const fake = await startReady({ msPerStep: 2 });
    const call = postStreaming(
      `${fake.url}/generate/stream`,
      text2image({ steps: 5 }, { request_id: 's-1' }),
    );
    const { status, headers } = await call.headers;
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const events = sseEvents(await call.done);
    expect(events[0]).toMatchObject({
      request_id: 's-1',
      status: 'queued',
      message: 'Request queued',
    });
    const progress = events.slice(1, -1);
    expect(progress.map((e) => e['status'])).toContain('generating');
    expect(
      progress.some((e) => /^Progress: \d+\.\d% \(\d\/5\)$/.test(e['message'] as string)),
    ).toBe(true);
    for (const event of progress) {
      expect(Object.keys(event).slice(0, 7)).toEqual([
        'request_id',
        'status',
        'message',
        'timestamp',
        'elapsed_time',
        'queue_info',
        'queue_position',
      ]);
      expect(Object.keys(event['queue_position'] as object)).toEqual([
        'current_queue',
        'position',
        'queue_size',
        'estimated_wait_time',
      ]);
    }
    const final = events.at(-1);
    expect(final).toMatchObject({ request_id: 's-1', status: 'final_result' });
    expect(Object.keys(final ?? {})).toEqual(['request_id', 'status', 'result', 'elapsed_time']);
    expect(final?.['result']).toMatchObject({ id: 's-1', status: 'completed' });
    expect((final?.['result'] as { output: unknown[] }).output).toHaveLength(1);
  });

  it('writes events as Python json.dumps does, with spaces after separators', async () => {
    const fake = await startReady();
    const call = postStreaming(`${fake.url}/generate/stream`, text2image({}, { request_id: 'py' }));
    const text = await call.done;
    expect(
      text.startsWith(
        'data: {"request_id": "py", "status": "queued", "message": "Request queued", "timestamp": "',
      ),
    ).toBe(true);
    expect(text).toMatch(/"elapsed_time": \d+\.\d\}\n\n$/);
  });

  it('answers 503 {"detail"} with Retry-After before opening a stream when the queue is full', async () => {
    const fake = await startReady({ maxQueueSize: 1 });
    await control(fake, { hold: true });
    const first = postStreaming(`${fake.url}/generate/sync`, text2image());
    await waitFor(() => fake.stats.inFlight === 1);
    const second = postStreaming(`${fake.url}/generate/sync`, text2image());
    await waitFor(async () => (await queueInfo(fake)).generation_queue_size === 1);
    const refused = await post(`${fake.url}/generate/stream`, text2image());
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.json()).toEqual({ detail: 'Worker at capacity (1 in flight); retry shortly' });
    await control(fake, { hold: false });
    await Promise.all([first.done, second.done]);
  });
});

describe('one job at a time', () => {
  it('keeps a second job waiting in the generation queue while the first holds ComfyUI', async () => {
    const fake = await startReady();
    await control(fake, { hold: true });
    const first = postStreaming(
      `${fake.url}/generate/sync`,
      text2image({}, { request_id: 'first' }),
    );
    await waitFor(() => fake.stats.inFlight === 1);
    const second = postStreaming(
      `${fake.url}/generate/stream`,
      text2image({}, { request_id: 'second' }),
    );
    await waitFor(async () => (await queueInfo(fake)).generation_queue_size === 1);
    // The first occupies ComfyUI; the second has not started generating.
    expect((await resultOf(fake, 'second')).body['status']).toBe('processing');
    await waitFor(() =>
      second.chunks.join('').includes('"current_queue": "generation", "position": 1'),
    );

    await control(fake, { hold: false });
    const firstBody = JSON.parse(await first.done) as { status: string };
    expect(firstBody.status).toBe('completed');
    const events = sseEvents(await second.done);
    expect(events.at(-1)?.['result']).toMatchObject({ status: 'completed' });
    expect((await queueInfo(fake)).generation_queue_size).toBe(0);
  });

  it('answers 503 with Retry-After 5 and a failed Result when MAX_QUEUE_SIZE jobs wait', async () => {
    const fake = await startReady({ maxQueueSize: 1 });
    await control(fake, { hold: true });
    const running = postStreaming(`${fake.url}/generate/sync`, text2image());
    await waitFor(() => fake.stats.inFlight === 1);
    const waiting = postStreaming(`${fake.url}/generate/sync`, text2image());
    await waitFor(async () => (await queueInfo(fake)).generation_queue_size === 1);
    const refused = await post(`${fake.url}/generate/sync`, text2image({}, { request_id: 'full' }));
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.json()).toEqual({
      id: 'full',
      message: 'Worker at capacity (1 in flight); retry shortly',
      status: 'failed',
      comfyui_response: {},
      output: [],
      timings: {},
    });
    await control(fake, { hold: false });
    await Promise.all([running.done, waiting.done]);
  });

  it('cancels the job of a client that disconnects and moves on to the next one', async () => {
    const fake = await startReady();
    await control(fake, { hold: true });
    const leaver = postStreaming(
      `${fake.url}/generate/sync`,
      text2image({}, { request_id: 'leaver' }),
    );
    await waitFor(() => fake.stats.inFlight === 1);
    const next = postStreaming(`${fake.url}/generate/sync`, text2image({}, { request_id: 'next' }));
    await waitFor(async () => (await queueInfo(fake)).generation_queue_size === 1);

    leaver.disconnect();
    await waitFor(() => fake.stats.aborted === 1);
    const cancelled = await resultOf(fake, 'leaver');
    expect(cancelled.status).toBe(499);
    expect(cancelled.body).toMatchObject({
      status: 'cancelled',
      message: 'Request cancelled due to client disconnection',
    });
    // ComfyUI is free again: the waiting job leaves the queue.
    await waitFor(async () => (await queueInfo(fake)).generation_queue_size === 0);
    await control(fake, { hold: false });
    expect((JSON.parse(await next.done) as { status: string }).status).toBe('completed');
  });
});

describe('ComfyUI and readiness', () => {
  it('serves /system_stats with the system and devices shape, also under /api', async () => {
    const fake = await startReady();
    for (const path of ['/system_stats', '/api/system_stats']) {
      const response = await get(`${fake.comfyuiUrl}${path}`);
      expect(response.status).toBe(200);
      const body = response.json() as {
        system: Record<string, unknown>;
        devices: Record<string, unknown>[];
      };
      expect(Object.keys(body)).toEqual(['system', 'devices']);
      for (const key of [
        'os',
        'ram_total',
        'ram_free',
        'comfyui_version',
        'python_version',
        'pytorch_version',
        'argv',
      ]) {
        expect(body.system).toHaveProperty(key);
      }
      expect(body.devices[0]).toMatchObject({ type: 'cuda', index: 0 });
      expect(body.devices[0]).toHaveProperty('vram_total');
      expect(body.devices[0]).toHaveProperty('vram_free');
    }
    expect(fake.workerEnv['COMFYUI_URL']).toBe(fake.comfyuiUrl);
    expect((await get(`${fake.comfyuiUrl}/nothing`)).status).toBe(404);
  });

  it('answers /health 503 and logs no BACKENDS_READY until ComfyUI answers, then 200 and the line', async () => {
    const fake = await start({ comfyuiAutoStart: false });
    await waitFor(() => fake.backendProbes >= 2, { label: 'the wrapper probed ComfyUI twice' });
    const down = await get(`${fake.url}/health`);
    expect(down.status).toBe(503);
    expect(down.json()).toMatchObject({
      status: 'unhealthy',
      backends_healthy: '0/1',
      backends: [{ base: fake.comfyuiUrl, http_ok: false, healthy: false }],
    });
    const before = readLog(fake.log);
    expect(before).toContain('Uvicorn running on');
    expect(before).not.toContain('BACKENDS_READY');

    await fake.comfyui.start();
    await waitFor(() => readLog(fake.log).includes(READY_LINE), { label: 'BACKENDS_READY' });
    const lines = readLog(fake.log).split('\n');
    expect(lines.findIndex((l) => l.includes('Uvicorn running on'))).toBeLessThan(
      lines.indexOf(READY_LINE),
    );
    const up = await get(`${fake.url}/health`);
    expect(up.status).toBe(200);
    expect(up.json()).toMatchObject({
      status: 'healthy',
      cache_type: 'memory',
      queues: { preprocess: 0, generation: 0, postprocess: 0 },
      backends_healthy: '1/1',
      gpu: { unrecoverable: false, reason: '' },
      backends: [{ http_ok: true, websocket_ok: true, healthy: true }],
    });
  });

  it('answers /health 503 again when ComfyUI goes away or the healthy knob is off', async () => {
    const fake = await startReady();
    await control(fake, { healthy: false });
    expect((await get(`${fake.url}/health`)).status).toBe(503);
    await control(fake, { healthy: true });
    expect((await get(`${fake.url}/health`)).status).toBe(200);
    await fake.comfyui.stop();
    expect((await get(`${fake.url}/health`)).status).toBe(503);
  });

  it('logs BACKENDS_READY_TIMEOUT when the load fails', async () => {
    const fake = await start({ failLoad: true });
    expect(readLog(fake.log)).toContain(
      'ERROR:main:BACKENDS_READY_TIMEOUT: not all of 1 backend(s) reachable after 600s',
    );
    expect(readLog(fake.log)).not.toContain('BACKENDS_READY:');
    expect((await get(`${fake.url}/health`)).status).toBe(503);
  });

  it('logs BACKENDS_READY_TIMEOUT when ComfyUI never answers before the deadline', async () => {
    const fake = await start({ comfyuiAutoStart: false, backendsReadyTimeoutMs: 20 });
    await waitFor(() =>
      readLog(fake.log).includes('BACKENDS_READY_TIMEOUT: not all of 1 backend(s)'),
    );
    expect(fake.backendsReady).toBe(false);
  });

  it('logs BACKEND_UNRECOVERABLE for the fatal knob once ready, and latches /health at 503', async () => {
    const fake = await startReady();
    await control(fake, { fatal: true });
    expect(readLog(fake.log)).toMatch(
      /^ERROR:workers\.generation_worker:BACKEND_UNRECOVERABLE: GPU on http:\/\/127\.0\.0\.1:\d+ latched: /m,
    );
    const health = await get(`${fake.url}/health`);
    expect(health.status).toBe(503);
    expect(health.json()).toMatchObject({ gpu: { unrecoverable: true } });
  });

  it('is registered as the comfyui fake and starts ComfyUI after the load delay', async () => {
    const starter = FAKES['comfyui'];
    expect(starter).toBeDefined();
    const logFile = join(dir, 'registered.log');
    const fake = (await starter?.({ logFile, loadDelayMs: 30 })) as ComfyUIFake;
    fakes.push(fake);
    expect(fake.comfyui.answering).toBe(false);
    await fake.whenBackendsReady();
    expect(fake.comfyui.answering).toBe(true);
    expect(readLog(logFile)).toContain(READY_LINE);
  });
});

describe('as a program', () => {
  it('prints where the wrapper and ComfyUI listen and serves both', async () => {
    const script = fileURLToPath(new URL('../../src/stand-ins/fakes/comfyui.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, MODEL_PORT: '0', COMFYUI_PORT: '0', MS_PER_STEP: '0.5' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      child.stdout.setEncoding('utf8');
      const [line] = (await once(child.stdout, 'data')) as [string];
      const listening = JSON.parse(line.trim()) as {
        event: string;
        url: string;
        comfyuiUrl: string;
      };
      expect(listening.event).toBe('listening');
      await waitFor(async () => (await get(`${listening.url}/health`)).status === 200);
      expect((await get(`${listening.comfyuiUrl}/system_stats`)).status).toBe(200);
      expect((await post(`${listening.url}/generate/sync`, text2image())).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
  });
});
