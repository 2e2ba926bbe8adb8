/**
 * The worker's readiness as one state machine:
 * starting ▶ model-loaded ▶ benchmarking ▶ ready, or errored from anywhere. Errors are sticky, as
 * in the reference (§6.6), except one raised by the healthcheck loop: it clears when the model is
 * healthy again (`clearHealthcheckError`), and the worker returns to the phase it had.
 * Draining is a separate flag: a draining worker keeps its phase.
 */
export type ReadinessPhase = 'starting' | 'model-loaded' | 'benchmarking' | 'ready' | 'errored';

/**
 * Where an error came from. `healthcheck`: failed model healthchecks, which can clear; `fatal`:
 * everything else (an error log line, a failed start-up step), which never clears.
 */
export type ErrorSource = 'healthcheck' | 'fatal';

export interface ReadinessSnapshot {
  readonly phase: ReadinessPhase;
  readonly draining: boolean;
  /** Benchmarked workload per second; 0 until measured. */
  readonly maxPerf: number;
  /** Seconds from process start to ready; 0 until ready. */
  readonly loadtime: number;
  readonly errorMessage: string;
}

export type ReadinessListener = (snapshot: ReadinessSnapshot, previous: ReadinessSnapshot) => void;

export class ReadinessState {
  #phase: ReadinessPhase = 'starting';
  #draining = false;
  #maxPerf = 0;
  #loadtime = 0;
  #errorMessage = '';
  #errorSource: ErrorSource | undefined;
  /** The phase an error interrupted, restored when a healthcheck error clears. */
  #phaseBeforeError: ReadinessPhase = 'starting';
  #errorCount = 0;
  readonly #startedAt: number;
  readonly #now: () => number;
  readonly #listeners: ReadinessListener[] = [];

  constructor(options: { now?: () => number; startedAt?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#startedAt = options.startedAt ?? this.#now();
  }

  get phase(): ReadinessPhase {
    return this.#phase;
  }
  get draining(): boolean {
    return this.#draining;
  }
  get maxPerf(): number {
    return this.#maxPerf;
  }
  get loadtime(): number {
    return this.#loadtime;
  }
  get errorMessage(): string {
    return this.#errorMessage;
  }
  /** Where the current error came from; undefined when not errored. */
  get errorSource(): ErrorSource | undefined {
    return this.#errorSource;
  }
  /** Every error reported, the first (sticky) one and those after it. */
  get errorCount(): number {
    return this.#errorCount;
  }
  /** Ready to serve: loaded, not errored, not draining. */
  get isReady(): boolean {
    return this.#phase === 'ready' && !this.#draining;
  }

  snapshot(): ReadinessSnapshot {
    return {
      phase: this.#phase,
      draining: this.#draining,
      maxPerf: this.#maxPerf,
      loadtime: this.#loadtime,
      errorMessage: this.#errorMessage,
    };
  }

  onChange(listener: ReadinessListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const index = this.#listeners.indexOf(listener);
      if (index >= 0) this.#listeners.splice(index, 1);
    };
  }

  modelLoaded(): void {
    if (this.#phase === 'errored') return;
    this.#change(() => (this.#phase = 'model-loaded'));
  }

  benchmarking(): void {
    if (this.#phase === 'errored') return;
    this.#change(() => (this.#phase = 'benchmarking'));
  }

  /** The model is loaded and measured: `loadtime` counts from process start. */
  ready(maxPerf: number): void {
    if (this.#phase === 'errored') return;
    this.#change(() => {
      this.#phase = 'ready';
      this.#maxPerf = maxPerf;
      this.#loadtime = (this.#now() - this.#startedAt) / 1000;
    });
  }

  /**
   * Sticky: the first error message stays, as the autoscaler expects (§6.6). The one exception: a
   * fatal error replaces a healthcheck error, so that a later recovery cannot clear it.
   */
  errored(message: string, source: ErrorSource = 'fatal'): void {
    this.#errorCount += 1;
    if (this.#phase === 'errored') {
      if (this.#errorSource !== 'healthcheck' || source !== 'fatal') return;
      this.#change(() => {
        this.#errorMessage = message;
        this.#errorSource = source;
      });
      return;
    }
    this.#change(() => {
      this.#phaseBeforeError = this.#phase;
      this.#phase = 'errored';
      this.#errorMessage = message;
      this.#errorSource = source;
    });
  }

  /**
   * Clears the current error if the healthcheck raised it: the model answers again. The worker
   * returns to the phase the error interrupted and `errorMessage` is empty again. Returns whether
   * it cleared; any other error stays.
   */
  clearHealthcheckError(): boolean {
    if (this.#phase !== 'errored' || this.#errorSource !== 'healthcheck') return false;
    this.#change(() => {
      this.#phase = this.#phaseBeforeError;
      this.#errorMessage = '';
      this.#errorSource = undefined;
    });
    return true;
  }

  startDraining(): void {
    if (this.#draining) return;
    this.#change(() => (this.#draining = true));
  }

  #change(apply: () => void): void {
    const previous = this.snapshot();
    apply();
    const next = this.snapshot();
    for (const listener of this.#listeners) listener(next, previous);
  }
}
