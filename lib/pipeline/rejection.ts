import type { WorkerError } from '../errors.ts';
import type { RejectionReason } from '../lifecycle/record.ts';

/**
 * A refusal (drain, signature, admission): the request is counted as rejected, and in accounting
 * with `reason` when it has a record by then.
 */
export class Rejection extends Error {
  constructor(
    readonly failure: WorkerError,
    readonly reason: RejectionReason | undefined,
  ) {
    super(failure.message);
    this.name = 'Rejection';
  }
}
