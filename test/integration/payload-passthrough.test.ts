import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker, z } from '../../lib/index.ts';
import type { ExampleModelServer } from '../../src/stand-ins/example-model-server.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

/** Sampling fields hello_world's schema does not name, as an OpenAI-style client sends them. */
const sampling = { temperature: 0.2, top_p: 0.9, stop: ['\n\n'], seed: 7 };
const named = { prompt: 'Hello there, model', max_response_tokens: 3 };

/** The body of the next request the model receives. */
async function nextModelBody(model: ExampleModelServer): Promise<unknown> {
  const [event] = await once(model, 'request');
  return (event as { body: unknown }).body;
}

function signed(stack: TestStack, payload: unknown) {
  return {
    auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
    payload,
  };
}

describe('hello_world, whose payload is a plain z.object as README teaches', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  it.each(['/generate', '/generate_stream'])(
    '%s forwards the payload fields its schema does not name to the model',
    async (route) => {
      const received = nextModelBody(stack.model);
      const response = await post(
        `${stack.worker.url}${route}`,
        signed(stack, { ...named, ...sampling }),
      );
      expect(response.status).toBe(200);
      expect(await received).toEqual({ ...named, ...sampling });
    },
  );
});

describe('a handler that opts out of forwarding', () => {
  const Options = z.object({ seed: z.number() });
  const worker = defineWorker({
    name: 'payload-rules',
    modelServerUrl: 'http://127.0.0.1:5001',
    handlers: [
      defineHandler({
        route: '/nested',
        modelPath: '/generate',
        payload: InputData.extend({ options: Options.optional() }),
      }),
      defineHandler({
        route: '/strip',
        modelPath: '/generate',
        payload: InputData,
        unknownFields: 'strip',
      }),
      defineHandler({
        route: '/reject',
        modelPath: '/generate',
        payload: InputData.extend({ options: Options.optional() }),
        unknownFields: 'reject',
      }),
      defineHandler({
        route: '/strict-schema',
        modelPath: '/generate',
        payload: z.strictObject(InputData.shape),
      }),
    ],
  });
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ worker });
  });
  afterAll(() => stack.close());

  it('forwards unknown fields of nested objects by default', async () => {
    const payload = { ...named, options: { seed: 1, mirostat: 2 }, ...sampling };
    const received = nextModelBody(stack.model);
    const response = await post(`${stack.worker.url}/nested`, signed(stack, payload));
    expect(response.status).toBe(200);
    expect(await received).toEqual(payload);
  });

  it("sends the model only the named fields with unknownFields: 'strip'", async () => {
    const received = nextModelBody(stack.model);
    const response = await post(
      `${stack.worker.url}/strip`,
      signed(stack, { ...named, ...sampling }),
    );
    expect(response.status).toBe(200);
    expect(await received).toEqual(named);
  });

  it("answers 422 naming each unknown field, nested ones too, with unknownFields: 'reject'", async () => {
    const before = stack.model.stats.received;
    const payload = { ...named, options: { seed: 1, mirostat: 2 }, temperature: 0.2, top_p: 0.9 };
    const response = await post(`${stack.worker.url}/reject`, signed(stack, payload));
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({
      payload: {
        'options.mirostat': 'unknown parameter',
        temperature: 'unknown parameter',
        top_p: 'unknown parameter',
      },
    });
    expect(stack.model.stats.received).toBe(before);

    const received = nextModelBody(stack.model);
    const ok = await post(
      `${stack.worker.url}/reject`,
      signed(stack, { ...named, options: { seed: 1 } }),
    );
    expect(ok.status).toBe(200);
    expect(await received).toEqual({ ...named, options: { seed: 1 } });
  });

  it('keeps refusing unknown fields of a z.strictObject payload', async () => {
    const before = stack.model.stats.received;
    const response = await post(
      `${stack.worker.url}/strict-schema`,
      signed(stack, { ...named, temperature: 0.2 }),
    );
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({ payload: { temperature: 'unknown parameter' } });
    expect(stack.model.stats.received).toBe(before);
  });
});
