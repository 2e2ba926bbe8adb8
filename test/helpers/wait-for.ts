/**
 * Polls `probe` until it returns a value (anything but `undefined` or `false`), or fails after the
 * deadline with a message naming what was awaited. Tests use this instead of sleeping.
 */
export interface WaitForOptions {
  /** @default 10000 */
  timeoutMs?: number;
  /** @default 10 */
  intervalMs?: number;
  /** What is awaited, for the failure message. */
  label?: string;
}

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  { timeoutMs = 10_000, intervalMs = 10, label = 'condition' }: WaitForOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (error) {
      // A probe that throws (e.g. a connection refused while a server starts) is retried.
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${String(lastError)})`;
      throw new Error(`waitFor: ${label} not met within ${timeoutMs} ms${cause}`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
