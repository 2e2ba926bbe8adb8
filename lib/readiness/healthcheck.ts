import type { Dispatcher } from 'undici';
import type { Logger } from '../log.ts';
import type { ReadinessState } from './state.ts';

export interface HealthcheckOptions {
  readonly dispatcher: Dispatcher;
  /** Full path on the model server, base path included. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly readiness: ReadinessState;
  readonly logger: Logger;
}

/**
 * Polls the model's healthcheck once readiness switches it on (protocol §13.2): at once, then every
 * interval. Failures before the first success are expected (the model is starting); after it, a
 * failure marks the worker errored.
 */
export class HealthcheckLoop {
  readonly #options: HealthcheckOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #healthy = false;
  #stopped = false;
  #resolveFirst!: () => void;
  /** Resolves at the first 200. */
  readonly firstHealthy: Promise<void>;
  constructor(options: HealthcheckOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'healthcheck' });
    this.firstHealthy = new Promise((resolve) => (this.#resolveFirst = resolve));
  }

  enable(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => void this.#poll(), this.#options.intervalMs);
    this.#timer.unref();
    void this.#poll();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  async #poll(): Promise<void> {
    let failure: string | undefined;
    try {
      const response = await this.#options.dispatcher.request({
        method: 'GET',
        path: this.#options.path,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      await response.body.dump();
      if (response.statusCode !== 200)
        failure = `Healthcheck failed with status: ${response.statusCode}`;
    } catch (error) {
      failure = `Healthcheck failed with error: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (this.#stopped) return;
    if (failure === undefined) {
      if (!this.#healthy) this.#log.info('model healthcheck passed');
      this.#healthy = true;
      this.#resolveFirst();
    } else if (this.#healthy) {
      this.#log.error({ reason: failure }, 'model healthcheck failed');
      this.#options.readiness.errored(failure);
    } else {
      this.#log.debug({ reason: failure }, 'model not healthy yet');
    }
  }
}
