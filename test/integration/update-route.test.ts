import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenMatches } from '../../lib/server/update-route.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

const TOKEN = 'mt-0123456789abcdef';

describe('POST /pyworker/update with MASTER_TOKEN set', () => {
  let stack: TestStack;
  let dir: string;
  let marker: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsworker-update-'));
    marker = join(dir, '.force_update');
    stack = await startStack({ env: { MASTER_TOKEN: TOKEN, FORCE_UPDATE_FILE: marker } });
  });
  afterAll(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const update = (headers: Record<string, string> = {}) =>
    post(`${stack.worker.url}/pyworker/update`, '', headers);

  it('writes the marker file and answers 200 {"ok":true} to the right Bearer token', async () => {
    rmSync(marker, { force: true });
    const response = await update({ authorization: `Bearer ${TOKEN}` });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ ok: true });
    expect(existsSync(marker)).toBe(true);
  });

  it('truncates a marker file that already exists', async () => {
    writeFileSync(marker, 'old content');
    expect((await update({ authorization: `Bearer ${TOKEN}` })).status).toBe(200);
    expect(readFileSync(marker, 'utf8')).toBe('');
  });

  it('accepts the raw token without "Bearer ", as the reference does', async () => {
    expect((await update({ authorization: TOKEN })).status).toBe(200);
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong token', { authorization: 'Bearer mt-0123456789abcdeX' }],
    ['a prefix of the token', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ['an empty token', { authorization: 'Bearer ' }],
    ['another scheme', { authorization: `Basic ${TOKEN}` }],
  ])('answers 401 JSON to %s and leaves the marker alone', async (_name, headers) => {
    rmSync(marker, { force: true });
    const response = await update(headers);
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ error: 'unauthorized', code: 'TSW_ERR_UNAUTHORIZED' });
    expect(existsSync(marker)).toBe(false);
  });
});

describe('POST /pyworker/update without a usable MASTER_TOKEN', () => {
  it.each([
    ['unset', {}],
    ['empty', { MASTER_TOKEN: '' }],
  ])('refuses every call when MASTER_TOKEN is %s', async (_name, env) => {
    const dir = mkdtempSync(join(tmpdir(), 'tsworker-update-'));
    const marker = join(dir, '.force_update');
    const stack = await startStack({ env: { ...env, FORCE_UPDATE_FILE: marker } });
    try {
      for (const headers of [{}, { authorization: 'Bearer ' }, { authorization: '' }]) {
        const response = await post(`${stack.worker.url}/pyworker/update`, '', headers);
        expect(response.status).toBe(401);
      }
      expect(existsSync(marker)).toBe(false);
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('POST /pyworker/update when the marker cannot be written', () => {
  it('answers 500 JSON naming the failure', async () => {
    const stack = await startStack({
      env: {
        MASTER_TOKEN: TOKEN,
        FORCE_UPDATE_FILE: join(tmpdir(), 'no-such-dir-tsworker', 'x', 'marker'),
      },
    });
    try {
      const response = await post(`${stack.worker.url}/pyworker/update`, '', {
        authorization: `Bearer ${TOKEN}`,
      });
      expect(response.status).toBe(500);
      expect(response.json()).toMatchObject({
        error: expect.stringMatching(/^failed to write file: .*ENOENT/),
        code: 'TSW_ERR_UPDATE_FAILED',
      });
    } finally {
      await stack.close();
    }
  });
});

describe('tokenMatches', () => {
  it('compares whole tokens, whatever their lengths', () => {
    expect(tokenMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(tokenMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(tokenMatches(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(tokenMatches('Bearer ', '')).toBe(false);
    expect(tokenMatches(undefined, TOKEN)).toBe(false);
    expect(tokenMatches(TOKEN, undefined)).toBe(false);
  });
});
