/**
 * The worker's single FIFO (protocol §5): every non-parallel handler shares it, one request runs at
 * a time, in arrival order. Entering is O(1); leaving while queued marks the ticket so the queue
 * skips it, which keeps cancellation O(1) and never leaks or double-releases the turn.
 */
export interface FifoTicket {
  readonly position: number;
}

interface Waiter {
  readonly ticket: FifoTicket;
  state: 'waiting' | 'running' | 'left';
  resolve: () => void;
}

export class FifoQueue {
  #waiters: Waiter[] = [];
  #head = 0;
  #running: Waiter | undefined;
  #entered = 0;

  /** Requests waiting for their turn (not counting the one running). */
  get waiting(): number {
    let count = 0;
    for (let i = this.#head; i < this.#waiters.length; i++) {
      if (this.#waiters[i]?.state === 'waiting') count += 1;
    }
    return count;
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  /**
   * Resolves with a ticket when it is this request's turn. Rejects with the signal's reason if the
   * signal aborts first; the request then leaves the queue without ever holding the turn.
   */
  enter(signal?: AbortSignal): Promise<FifoTicket> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const ticket: FifoTicket = { position: this.#entered++ };
    if (this.#running === undefined) {
      // Nobody holds the turn, so anything still listed has left: start afresh.
      this.#waiters = [];
      this.#head = 0;
      this.#running = { ticket, state: 'running', resolve: noop };
      return Promise.resolve(ticket);
    }
    return new Promise<FifoTicket>((resolve, reject) => {
      const waiter: Waiter = {
        ticket,
        state: 'waiting',
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ticket);
        },
      };
      const onAbort = () => {
        if (waiter.state !== 'waiting') return;
        waiter.state = 'left';
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Gives the turn to the next waiting request. Call exactly once per ticket that was granted. */
  release(ticket: FifoTicket): void {
    if (this.#running?.ticket !== ticket) return;
    this.#running = undefined;
    while (this.#head < this.#waiters.length) {
      const next = this.#waiters[this.#head];
      this.#waiters[this.#head] = undefined as unknown as Waiter;
      this.#head += 1;
      if (next !== undefined && next.state === 'waiting') {
        next.state = 'running';
        this.#running = next;
        next.resolve();
        break;
      }
    }
    if (this.#head === this.#waiters.length) {
      this.#waiters = [];
      this.#head = 0;
    }
  }
}

function noop(): void {}
