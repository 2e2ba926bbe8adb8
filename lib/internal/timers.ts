/**
 * Timeouts and waits shared by the readiness sequence, the log watcher and shutdown. Each clears
 * its timer and its abort listener once it is over, so nothing lingers after the wait.
 */

/** Whether `promise` fulfils within `ms`; rejects if it rejects first. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves after `ms`, or at once when `signal` aborts. Unlike `node:timers/promises` it never
 * rejects: a polling loop checks `signal.aborted` itself after the wait.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

/**
 * `promise`, unless `ms` pass first (rejects with `Error(message)`) or `signal` aborts (rejects
 * with its reason). The timer is unref'd: a wait alone must not keep the process alive.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  message: string,
  signal?: AbortSignal,
): Promise<T> {
  let cancel = (): void => undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => reject(signal?.reason);
    const timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    cancel = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
  });
  return Promise.race([promise, timeout]).finally(() => cancel());
}

/**
 * Runs `action` once after `ms`, unless `signal` aborts first. The timer is unref'd: a wait
 * alone must not keep the process alive.
 */
export function runAfter(ms: number, signal: AbortSignal, action: () => void): void {
  if (signal.aborted) return;
  const cancel = (): void => clearTimeout(timer);
  const timer = setTimeout(() => {
    signal.removeEventListener('abort', cancel);
    if (!signal.aborted) action();
  }, ms);
  timer.unref();
  signal.addEventListener('abort', cancel, { once: true });
}

/** Runs `action` every `ms` until `signal` aborts. The timer is unref'd, as `runAfter`'s. */
export function runEvery(ms: number, signal: AbortSignal, action: () => void): void {
  if (signal.aborted) return;
  const timer = setInterval(action, ms);
  timer.unref();
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}
