import { describe, expect, it } from 'vitest';
import { RequestAbort } from '../../../lib/pipeline/abort.ts';

describe('RequestAbort', () => {
  it('aborts once, keeping the first reason, and tells its listeners once', () => {
    const abort = new RequestAbort();
    let heard = 0;
    abort.once('abort', () => (heard += 1));
    abort.abort('first');
    abort.abort('second');
    expect(abort).toMatchObject({ aborted: true, reason: 'first' });
    expect(heard).toBe(1);
  });

  it('gives an AbortSignal that follows it, whether asked for before or after the abort', () => {
    const early = new RequestAbort();
    const signal = early.signal;
    expect(signal.aborted).toBe(false);
    early.abort(new Error('client gone'));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe('client gone');

    const late = new RequestAbort();
    late.abort('session closed');
    expect(late.signal.aborted).toBe(true);
    expect(late.signal.reason).toBe('session closed');
    expect(late.signal).toBe(late.signal);
  });
});
