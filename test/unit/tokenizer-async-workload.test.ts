/**
 * A workload function may return a promise (a large prompt counted off the main thread). Its
 * failures fall back to the default 100 with a warning, exactly as a synchronous one's do, and a
 * plain number still comes back as a plain number: the common path adds no await.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { defineHandler, z } from '../../lib/index.ts';
import { DEFAULT_WORKLOAD } from '../../lib/entry-presets.ts';
import { createLogger } from '../../lib/entry-server.ts';
import { MAX_COST } from '../../lib/pipeline/validate.ts';
import { measureWorkload } from '../../lib/pipeline/workload.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger({ level: 'warn', pretty: false, destination }), lines };
}

const handlerWith = (workload: (payload: { n: number }) => number | Promise<number>) =>
  defineHandler({ route: '/w', payload: z.object({ n: z.number() }), workload });

describe('measureWorkload with an async workload function', () => {
  it('returns a plain number, not a promise, when the workload function returns one', () => {
    const { logger } = capture();
    const measured = measureWorkload(
      handlerWith((p) => p.n * 2),
      { n: 21 },
      logger,
    );
    expect(measured).toBe(42);
  });

  it("awaits a workload function's promise and checks its value", async () => {
    const { logger, lines } = capture();
    const measured = measureWorkload(
      handlerWith(async (p) => p.n * 2),
      { n: 21 },
      logger,
    );
    expect(measured).toBeInstanceOf(Promise);
    expect(await measured).toBe(42);
    expect(lines).toEqual([]);
  });

  it('falls back to the default 100 with a warning when the promise rejects, as when the function throws', async () => {
    const rejecting = capture();
    const rejected = await measureWorkload(
      handlerWith(() => Promise.reject(new Error('thread died'))),
      { n: 1 },
      rejecting.logger,
    );
    const throwing = capture();
    const threw = measureWorkload(
      handlerWith(() => {
        throw new Error('tokenizer exploded');
      }),
      { n: 1 },
      throwing.logger,
    );
    expect(rejected).toBe(DEFAULT_WORKLOAD);
    expect(threw).toBe(DEFAULT_WORKLOAD);
    expect(rejecting.lines).toHaveLength(1);
    expect(rejecting.lines[0]).toMatchObject({
      level: 'warn',
      route: '/w',
      err: { message: 'thread died' },
      message: throwing.lines[0]?.['message'],
    });
  });

  it('falls back to 100 for a promised non-number, NaN or negative, and caps a promised huge number', async () => {
    for (const value of [Number.NaN, -1, '12' as unknown as number]) {
      const { logger, lines } = capture();
      expect(
        await measureWorkload(
          handlerWith(async () => value),
          { n: 1 },
          logger,
        ),
      ).toBe(DEFAULT_WORKLOAD);
      expect(lines[0]).toMatchObject({ level: 'warn', workload: String(value) });
    }
    const { logger } = capture();
    expect(
      await measureWorkload(
        handlerWith(async () => MAX_COST * 10),
        { n: 1 },
        logger,
      ),
    ).toBe(MAX_COST);
  });
});
