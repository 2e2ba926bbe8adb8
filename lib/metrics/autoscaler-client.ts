import { setTimeout as delay } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from '../log.ts';
import { errorMessage } from '../internal/values.ts';

/** The autoscaler's API base that /delete_requests/ must skip (protocol §8.3). */
export const CLOUD_API_ADDR = 'https://cloud.vast.ai/api/v0';

export interface AutoscalerClientOptions {
  /** REPORT_ADDR entries, in order. */
  readonly addrs: readonly string[];
  /** One POST attempt, in milliseconds. */
  readonly timeoutMs: number;
  /** Pause after a failed attempt (the reference sleeps 2 s after each). */
  readonly retryDelayMs: number;
  /** Attempts per address. @default 3 */
  readonly attempts?: number;
  readonly logger: Logger;
  readonly dispatcher?: Dispatcher;
}

/**
 * POSTs JSON to the autoscaler: each address in order, a few attempts each, the first success ends
 * the round (protocol §8.2). A small pool of its own, apart from the model server's, so reports never
 * wait behind model traffic.
 */
export class AutoscalerClient {
  readonly #options: AutoscalerClientOptions;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #closing = new AbortController();

  constructor(options: AutoscalerClientOptions) {
    this.#options = options;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher =
      options.dispatcher ?? new Agent({ connections: 4, keepAliveTimeout: 30_000 });
  }

  /** Resolves true when some address accepted the body with a 2xx. Never throws. */
  async post(
    path: string,
    body: unknown,
    options: { skipCloudApi?: boolean } = {},
  ): Promise<boolean> {
    const text = JSON.stringify(body);
    const attempts = this.#options.attempts ?? 3;
    for (const addr of this.#options.addrs) {
      if (options.skipCloudApi === true && addr === CLOUD_API_ADDR) continue;
      const url = `${addr}${path}`;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (this.#closing.signal.aborted) return false;
        const failure = await this.#attempt(url, text);
        if (failure === undefined) return true;
        this.#options.logger.warn({ url, attempt, error: failure }, 'autoscaler post failed');
        try {
          await delay(this.#options.retryDelayMs, undefined, { signal: this.#closing.signal });
        } catch {
          return false;
        }
      }
    }
    return false;
  }

  async close(): Promise<void> {
    this.#closing.abort();
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  async #attempt(url: string, text: string): Promise<string | undefined> {
    try {
      const response = await this.#dispatcher.request({
        origin: new URL(url).origin,
        path: new URL(url).pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
        signal: AbortSignal.any([
          AbortSignal.timeout(this.#options.timeoutMs),
          this.#closing.signal,
        ]),
      });
      await response.body.dump();
      if (response.statusCode >= 200 && response.statusCode < 300) return undefined;
      return `status ${response.statusCode}`;
    } catch (error) {
      return errorMessage(error);
    }
  }
}
