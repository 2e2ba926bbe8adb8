/**
 * The requests the pipeline is handling right now, from arrival to the last byte (queued ones
 * included), by what aborts each (an AbortController, or the pipeline's cheaper RequestAbort). A graceful drain waits for it to empty and aborts what is
 * left when the grace period ends; the pipeline then counts those requests as cancelled.
 */
/** Anything that aborts a request's work. */
export interface Abortable {
  abort(reason: unknown): void;
}

export class InFlightRequests {
  readonly #controllers = new Set<Abortable>();
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;

  get size(): number {
    return this.#controllers.size;
  }

  add(controller: Abortable): void {
    this.#controllers.add(controller);
  }

  delete(controller: Abortable): void {
    if (this.#controllers.delete(controller) && this.#controllers.size === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  /** Resolves once no request is in flight (at once when none is). */
  whenIdle(): Promise<void> {
    if (this.#controllers.size === 0) return Promise.resolve();
    if (this.#idle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  /** Aborts every request in flight with `reason`; returns how many there were. */
  abortAll(reason: unknown): number {
    const controllers = [...this.#controllers];
    for (const controller of controllers) controller.abort(reason);
    return controllers.length;
  }
}
