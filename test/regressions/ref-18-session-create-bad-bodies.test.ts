// Protocol reference §12.18 (and §11.13, §11.14): malformed /session/create bodies were unhandled 500s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

describe('ref-18: malformed /session/create bodies', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  it.each([
    ['null'],
    ['42'],
    ['[1,2]'],
    ['"text"'],
    ['{}'],
    ['{"auth_data": null, "payload": null}'],
  ])('answers %s with a JSON 422', async (raw) => {
    const response = await post(`${stack.worker.url}/session/create`, raw);
    expect(response.status).toBe(422);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.json()).toBeTypeOf('object');
  });
});
