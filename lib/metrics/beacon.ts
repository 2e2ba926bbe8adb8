import { publicUrl, type ResolvedConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { AutoscalerClient } from './autoscaler-client.ts';
import { emptyWorkerStatus, type WorkerStatus } from './reporter.ts';

export interface ErrorBeacon {
  /** Reports delivered so far. */
  readonly sent: number;
  stop(): Promise<void>;
}

/**
 * The error beacon (protocol §1.2 step 5, §8.4): a worker that failed to start tells the autoscaler
 * so every interval, with `error_msg = "Worker Server failed to launch: <reason>"`, until stopped.
 * A failed start-up is never silent.
 */
export function startErrorBeacon(
  config: ResolvedConfig,
  reason: string,
  logger: Logger,
): ErrorBeacon {
  const log = logger.child({ component: 'beacon' });
  const client = new AutoscalerClient({
    addrs: config.reportAddrs,
    timeoutMs: config.timings.reportTimeout * 1000,
    retryDelayMs: config.timings.reportRetryDelay * 1000,
    logger: log,
  });
  const body: WorkerStatus = {
    ...emptyWorkerStatus({
      id: config.containerId,
      mtoken: config.masterToken ?? null,
      url: publicUrl(config),
    }),
    error_msg: `Worker Server failed to launch: ${reason}`,
  };
  let sent = 0;
  let stopped = false;
  let inFlight: Promise<void> | undefined;
  const send = () => {
    if (stopped || inFlight !== undefined) return;
    inFlight = client.post('/worker_status/', body).then((delivered) => {
      inFlight = undefined;
      if (delivered) sent += 1;
      log.error({ delivered, error_msg: body.error_msg }, 'start-up failed; error beacon sent');
    });
  };
  send();
  const timer = setInterval(send, config.timings.errorBeaconInterval * 1000);
  return {
    get sent() {
      return sent;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await client.close();
      await inFlight;
    },
  };
}
