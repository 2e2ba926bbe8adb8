/**
 * tsx bench/micro-log.ts: CPU per request log line (the shape lib/server/app.ts logs) into a file,
 * through pino's asynchronous destination (the old default) and through BufferedLogDestination
 * (the default now), yielding to the event loop every 64 lines as a busy server would.
 */
import { closeSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type DestinationStream } from 'pino';
import { BufferedLogDestination, createLogger, requestLineLogger } from '../lib/log.ts';

const file = join(tmpdir(), `tsworker-micro-log-${process.pid}.txt`);
const fd = openSync(file, 'w');
const variants: Record<string, () => DestinationStream> = {
  'pino.destination({ sync: false })': () => pino.destination({ fd, sync: false }),
  BufferedLogDestination: () => new BufferedLogDestination(fd),
};
const LINES = 100_000;

async function measure(name: string): Promise<void> {
  const destination = variants[name]!();
  const logger = createLogger({ level: 'info', pretty: false, destination });
  const log = requestLineLogger(logger, 'request');
  const start = process.cpuUsage();
  for (let i = 0; i < LINES; i++) {
    log.info(
      {
        requestId: `req-${i}`,
        request_idx: i,
        reqnum: i,
        route: '/generate',
        status: 200,
        outcome: 'completed',
        workload: 256,
        queueMs: 0.01,
        ttfbMs: 0.45,
        totalMs: 0.52,
      },
      'request',
    );
    if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  logger.flush();
  const used = process.cpuUsage(start);
  console.log(`${name}: ${((used.user + used.system) / LINES).toFixed(2)} µs CPU per line`);
}

for (let round = 0; round < 3; round++)
  for (const name of Object.keys(variants)) await measure(name);
await new Promise((resolve) => setTimeout(resolve, 200));
closeSync(fd);
rmSync(file);
