import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, loadConfig, startWorker } from '../../lib/index.ts';
import { startExampleModelServer } from '../stand-ins/example-model-server.ts';
import { startLocalAutoscaler } from '../stand-ins/local-autoscaler.ts';
import { loadWorker } from './load-worker.ts';
import { drainOnSignals } from './signals.ts';

/**
 * `npm start` / `tsworker dev`: the whole local stack on loopback — the example model server, the
 * local autoscaler and a worker (hello_world by default) — and a copy-paste example to call it.
 */
export async function devCommand(
  workerName = 'hello_world',
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const host = '127.0.0.1';
  const modelPort = Number(env['MODEL_PORT'] || 5001);
  const autoscalerPort = Number(env['AUTOSCALER_PORT'] || 8081);
  const workerPort = Number(env['WORKER_PORT'] || 3000);
  const logDir = join(tmpdir(), 'tsworker-dev');
  mkdirSync(logDir, { recursive: true });
  const modelLog = env['MODEL_LOG'] || join(logDir, 'model.log');
  // As start_server.sh does: the worker reads the log from its start, so begin with an empty one.
  writeFileSync(modelLog, '');

  const model = await startExampleModelServer({
    host,
    port: modelPort,
    logFile: modelLog,
    tokenDelayMs: Number(env['TOKEN_DELAY_MS'] || 10),
  });
  const autoscaler = await startLocalAutoscaler({ host, port: autoscalerPort });
  const config = loadConfig({
    ...env,
    WORKER_PORT: String(workerPort),
    WORKER_HOST: host,
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: env['CONTAINER_ID'] || '1',
    PUBLIC_IPADDR: host,
    MODEL_LOG: modelLog,
    MODEL_SERVER_URL: model.url,
    UNSECURED: 'false',
  });
  const logger = createLogger({ level: config.logLevel });
  const worker = await loadWorker(workerName);
  const running = await startWorker(worker, config, { logger });
  autoscaler.register(running.url);

  process.stdout.write(banner(running.url, autoscaler.url, model.url, modelLog));

  // Drain the worker first, so its final reports reach the local autoscaler, then stop the stand-ins.
  drainOnSignals(running, logger, {
    after: () => Promise.allSettled([model.close(), autoscaler.close()]),
  });
}

function banner(
  workerUrl: string,
  autoscalerUrl: string,
  modelUrl: string,
  modelLog: string,
): string {
  return `
tsworker local stack
  worker          ${workerUrl}   (hello_world)
  autoscaler      ${autoscalerUrl}   (signs auth_data, records reports: ${autoscalerUrl}/)
  model server    ${modelUrl}   (log: ${modelLog})

Call the worker with a signed request (auth_data comes from the autoscaler's /route/):

  AUTH=$(curl -s -X POST ${autoscalerUrl}/route/ -H 'content-type: application/json' \\
    -d '{"endpoint":"hello","api_key":"local","cost":100}')
  curl -N -X POST ${workerUrl}/generate_stream -H 'content-type: application/json' \\
    -d "{\\"auth_data\\": $AUTH, \\"payload\\": {\\"prompt\\": \\"Hello, world\\", \\"max_response_tokens\\": 20}}"

Load-test it:  npm run test_load -- -n 100 -rps 10 -k local -e hello -l
Stop with Ctrl-C.
`;
}
