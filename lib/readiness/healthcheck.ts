import type { Dispatcher } from 'undici';
import type { Logger } from '../log.ts';
import type { ReadinessState } from './state.ts';
import { errorMessage } from '../internal/values.ts';

export interface HealthcheckOptions {
  readonly dispatcher: Dispatcher;
  /** Full path on the model server, base path included. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly readiness: ReadinessState;
  readonly logger: Logger;
  /**
   * Consecutive failed checks that mark a ready worker errored, and consecutive passed checks that
   * clear that error again (`HEALTHCHECK_FAILURES`). @default 3
   */
  readonly failuresToError?: number;
}

/**
 * Polls the model's healthcheck once switched on (protocol §13.2): at once, then `intervalMs` after
 * each check ends, so checks never overlap and "in a row" means what it says.
 *
 * Failures count only while the worker is ready, as in the newest reference: before that the model
 * is loading or being benchmarked, and the readiness sequence judges it. `failuresToError` failures
 * in a row mark the worker errored; as many passes in a row clear that error. Errors from other
 * sources (an error log line) are not the healthcheck's to clear.
 */
export class HealthcheckLoop {
  readonly #options: HealthcheckOptions;
  readonly #log: Logger;
  readonly #threshold: number;
  readonly #stopping = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #enabled = false;
  #passedOnce = false;
  #failuresInARow = 0;
  #passesInARow = 0;
  #resolveFirst!: () => void;
  /** Resolves at the first 200. */
  readonly firstHealthy: Promise<void>;

  constructor(options: HealthcheckOptions) {
    this.#options = options;
    this.#threshold = options.failuresToError ?? 3;
    this.#log = options.logger.child({ component: 'healthcheck' });
    this.firstHealthy = new Promise((resolve) => (this.#resolveFirst = resolve));
  }

  /** Whether polling has been switched on. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Starts polling (idempotent): the first check runs at once. */
  enable(): void {
    if (this.#enabled || this.#stopping.signal.aborted) return;
    this.#enabled = true;
    void this.#poll();
  }

  stop(): void {
    this.#stopping.abort();
    clearTimeout(this.#timer);
  }

  async #poll(): Promise<void> {
    let failure: string | undefined;
    try {
      const response = await this.#options.dispatcher.request({
        method: 'GET',
        path: this.#options.path,
        signal: AbortSignal.any([
          AbortSignal.timeout(this.#options.timeoutMs),
          this.#stopping.signal,
        ]),
      });
      await response.body.dump();
      if (response.statusCode !== 200)
        failure = `Healthcheck failed with status: ${response.statusCode}`;
    } catch (error) {
      failure = `Healthcheck failed with error: ${errorMessage(error)}`;
    }
    if (this.#stopping.signal.aborted) return;
    if (failure === undefined) this.#passed();
    else this.#failed(failure);
    this.#timer = setTimeout(() => void this.#poll(), this.#options.intervalMs);
    this.#timer.unref();
  }

  #passed(): void {
    const { readiness } = this.#options;
    this.#failuresInARow = 0;
    this.#passesInARow += 1;
    if (!this.#passedOnce) {
      this.#passedOnce = true;
      this.#log.info('model healthcheck passed');
      this.#resolveFirst();
    }
    // Only an error the healthcheck raised clears: `clearHealthcheckError` leaves any other.
    if (
      readiness.phase === 'errored' &&
      this.#passesInARow >= this.#threshold &&
      readiness.clearHealthcheckError()
    ) {
      this.#log.info(
        { passes: this.#passesInARow },
        `model healthy again (${this.#passesInARow} passing healthchecks in a row): healthcheck error cleared`,
      );
    }
  }

  #failed(failure: string): void {
    const { readiness } = this.#options;
    this.#passesInARow = 0;
    if (readiness.phase === 'ready') {
      this.#failuresInARow += 1;
      const count = this.#failuresInARow;
      if (count >= this.#threshold) {
        this.#log.error(
          { reason: failure, failures: count },
          `model healthcheck failed ${count} times in a row: worker errored`,
        );
        readiness.errored(failure, 'healthcheck');
      } else {
        this.#log.warn(
          { reason: failure, failures: count, threshold: this.#threshold },
          `model healthcheck failed (${count} of ${this.#threshold} in a row before the worker is errored)`,
        );
      }
    } else if (readiness.errorSource === 'healthcheck') {
      this.#failuresInARow += 1;
      this.#log.debug({ reason: failure }, 'model healthcheck still failing');
    } else {
      this.#log.debug({ reason: failure }, 'model not healthy yet');
    }
  }
}
