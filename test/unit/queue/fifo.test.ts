import { describe, expect, it } from 'vitest';
import { FifoQueue } from '../../../lib/queue/fifo.ts';

describe('FifoQueue', () => {
  it('grants the turn in arrival order, one at a time', async () => {
    const queue = new FifoQueue();
    const order: number[] = [];
    const first = await queue.enter();
    const second = queue.enter().then((t) => (order.push(2), t));
    const third = queue.enter().then((t) => (order.push(3), t));
    expect(queue.waiting).toBe(2);
    queue.release(first);
    queue.release(await second);
    queue.release(await third);
    expect(order).toEqual([2, 3]);
    expect(queue.busy).toBe(false);
  });

  it('lets a waiting request leave when its signal aborts, without holding up the rest', async () => {
    const queue = new FifoQueue();
    const first = await queue.enter();
    const controller = new AbortController();
    const leaving = queue.enter(controller.signal);
    const staying = queue.enter();
    controller.abort(new Error('client gone'));
    await expect(leaving).rejects.toThrow('client gone');
    queue.release(first);
    const ticket = await staying;
    expect(queue.busy).toBe(true);
    queue.release(ticket);
    expect(queue.busy).toBe(false);
  });

  it('gives the turn at once when only abandoned requests were listed', async () => {
    const queue = new FifoQueue();
    const first = await queue.enter();
    const controller = new AbortController();
    const leaving = queue.enter(controller.signal);
    controller.abort(new Error('gone'));
    await expect(leaving).rejects.toThrow();
    queue.release(first);
    const next = await queue.enter();
    expect(queue.busy).toBe(true);
    queue.release(next);
  });

  it('ignores a second release of the same ticket', async () => {
    const queue = new FifoQueue();
    const first = await queue.enter();
    const second = queue.enter();
    queue.release(first);
    const ticket = await second;
    queue.release(first);
    expect(queue.busy).toBe(true);
    queue.release(ticket);
  });
});
