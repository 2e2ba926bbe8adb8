/**
 * When the engine starts requests: the open loop (at a rate, whatever the answers do) and the
 * closed loop (N users, each sending its next request when its last one ends).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { arrivalOffsets, userStartOffsets, type Random } from './arrivals.ts';
import type { OpenSchedule, PlannedRequest, RequestResult } from './load-types.ts';

/** What a loop needs from the run it drives. */
export interface LoopHost {
  readonly stopSignal: AbortSignal;
  now(): number;
  plan(index: number): PlannedRequest;
  /** Sends one request and counts it; resolves when it has ended. */
  execute(index: number, planned: PlannedRequest, measured: boolean): Promise<RequestResult>;
  /** A measured request started. */
  onStarted(): void;
  /** Every request has been sent; some are still in flight. */
  onDraining(): void;
}

export interface LoopStrategy {
  /** Sends every request (or until stopped) and resolves when they have all ended. */
  run(measuredStart: number): Promise<void>;
  /** The worst delay between a scheduled and an actual start. */
  readonly maxLagMs: number;
  /** From the first measured start to the last, given the sorted records. */
  sendSpanMs(records: readonly RequestResult[]): number;
}

/** Waits unless the run is stopped first; false when it was. */
async function waitUnlessStopped(ms: number, stopSignal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal: stopSignal });
    return true;
  } catch {
    return false;
  }
}

export class ClosedLoop implements LoopStrategy {
  readonly maxLagMs = 0;
  #next = 0;

  constructor(
    private readonly host: LoopHost,
    private readonly count: number,
    private readonly users: number,
    private readonly rampSeconds: number,
    private readonly measured: boolean,
  ) {}

  async run(): Promise<void> {
    const users = Math.max(1, Math.min(this.users, this.count));
    await Promise.all(
      userStartOffsets(users, this.rampSeconds).map((offset) => this.#user(offset)),
    );
  }

  sendSpanMs(records: readonly RequestResult[]): number {
    return records.reduce((latest, record) => Math.max(latest, record.startMs), 0);
  }

  async #user(startOffset: number): Promise<void> {
    if (startOffset > 0 && !(await waitUnlessStopped(startOffset, this.host.stopSignal))) return;
    while (!this.host.stopSignal.aborted) {
      const index = this.#next++;
      if (index >= this.count) return;
      if (this.measured) this.host.onStarted();
      await this.host.execute(index, this.host.plan(index), this.measured);
    }
  }
}

export class OpenLoop implements LoopStrategy {
  maxLagMs = 0;
  #lastSendMs = 0;

  /** `first` is request 0's plan, made before the clock started. */
  constructor(
    private readonly host: LoopHost,
    private readonly schedule: OpenSchedule,
    private readonly count: number,
    private readonly random: Random,
    private readonly first: PlannedRequest | undefined,
  ) {}

  async run(measuredStart: number): Promise<void> {
    const offsets = arrivalOffsets({
      rate: this.schedule.rate,
      kind: this.schedule.arrivals ?? 'poisson',
      rampSeconds: this.schedule.rampSeconds ?? 0,
      random: this.random,
    });
    const inFlight = new Set<Promise<RequestResult>>();
    for (let index = 0; index < this.count; index++) {
      const offset = offsets.next().value;
      // Planned before its time comes, so making the payload does not delay the start.
      const planned = index === 0 && this.first !== undefined ? this.first : this.host.plan(index);
      const wait = measuredStart + offset - this.host.now();
      if (wait > 1 && !(await waitUnlessStopped(wait, this.host.stopSignal))) break;
      if (this.host.stopSignal.aborted) break;
      const sentAt = this.host.now();
      this.maxLagMs = Math.max(this.maxLagMs, sentAt - measuredStart - offset);
      this.#lastSendMs = sentAt - measuredStart;
      this.host.onStarted();
      const pending = this.host.execute(index, planned, true);
      inFlight.add(pending);
      void pending.finally(() => inFlight.delete(pending));
    }
    if (inFlight.size > 0) this.host.onDraining();
    await Promise.all(inFlight);
  }

  sendSpanMs(): number {
    return this.#lastSendMs;
  }
}
