import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type WorkerEnv } from '../../lib/index.ts';
import { createLogger, loadConfig, startWorker } from '../../lib/entry-server.ts';
import { startExampleModelServer } from '../stand-ins/example-model-server.ts';
import { FAKES } from '../stand-ins/fakes/index.ts';
import { startLocalAutoscaler } from '../stand-ins/local-autoscaler.ts';
import { keepServingOnStrayErrors } from './last-resort.ts';
import { loadWorker } from './load-worker.ts';
import { drainOnSignals } from './signals.ts';
import { loadTestDefinition } from './test-load.ts';

interface ModelStandIn {
  readonly url: string;
  /** Worker environment the stand-in needs (its model id, a second server's URL). */
  readonly workerEnv: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

/**
 * The worker's model server on loopback: the engine's faithful fake for an engine worker, the
 * example model server for hello_world and any worker without a fake.
 */
async function startModel(
  workerName: string,
  host: string,
  port: number,
  logFile: string,
  env: WorkerEnv,
): Promise<ModelStandIn> {
  const startFake = FAKES[workerName];
  if (startFake !== undefined) {
    const loadDelayMs = Number(env['LOAD_DELAY_MS'] || 0);
    const fake = await startFake({ host, port, logFile, loadDelayMs });
    return { url: fake.url, workerEnv: fake.workerEnv, close: () => fake.close() };
  }
  const model = await startExampleModelServer({
    host,
    port,
    logFile,
    tokenDelayMs: Number(env['TOKEN_DELAY_MS'] || 10),
  });
  return { url: model.url, workerEnv: {}, close: () => model.close() };
}

/**
 * `npm start` / `tsworker dev [worker]`: the whole local stack on loopback — the worker's model
 * server (its fake), the local autoscaler and the worker (hello_world by default) — and a
 * copy-paste example to call it.
 */
export async function devCommand(
  workerName = 'hello_world',
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const host = '127.0.0.1';
  const modelPort = Number(env['MODEL_PORT'] || (FAKES[workerName] === undefined ? 5001 : 0));
  const autoscalerPort = Number(env['AUTOSCALER_PORT'] || 8081);
  const workerPort = Number(env['WORKER_PORT'] || 3000);
  const logDir = join(tmpdir(), 'tsworker-dev');
  mkdirSync(logDir, { recursive: true });
  const modelLog = env['MODEL_LOG'] || join(logDir, `${workerName.replace(/\W+/g, '_')}.log`);
  // As start_server.sh does: the worker reads the log from its start, so begin with an empty one.
  writeFileSync(modelLog, '');

  const model = await startModel(workerName, host, modelPort, modelLog, env);
  const autoscaler = await startLocalAutoscaler({ host, port: autoscalerPort });
  const workerEnv: NodeJS.ProcessEnv = {
    ...model.workerEnv,
    ...env,
    WORKER_PORT: String(workerPort),
    WORKER_HOST: host,
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: env['CONTAINER_ID'] || '1',
    PUBLIC_IPADDR: host,
    MODEL_LOG: modelLog,
    MODEL_SERVER_URL: model.url,
    UNSECURED: 'false',
  };
  const config = loadConfig(workerEnv);
  const logger = createLogger({ level: config.logLevel });
  keepServingOnStrayErrors(logger);
  const worker = await loadWorker(workerName, workerEnv);
  const running = await startWorker(worker, config, { logger });
  autoscaler.register(running.url);
  // Drain the worker first, so its final reports reach the local autoscaler, then stop the stand-ins.
  drainOnSignals(running, logger, {
    after: () => Promise.allSettled([model.close(), autoscaler.close()]),
  });

  const example = await exampleRequest(workerName);
  process.stdout.write(
    banner({
      worker: worker.name,
      workerUrl: running.url,
      autoscalerUrl: autoscaler.url,
      modelUrl: model.url,
      modelLog,
      ...example,
    }),
  );
}

/** A route and payload to show in the banner: the worker's load test's first sample. */
async function exampleRequest(
  workerName: string,
): Promise<{ route: string; payload: unknown } | undefined> {
  const definition = await loadTestDefinition(workerName).catch(() => undefined);
  if (definition === undefined) return undefined;
  const route = definition.defaultRoute;
  const payload = definition.routes[route]?.payload(0);
  return payload === undefined ? undefined : { route, payload: shorten(payload) };
}

/** Long prompts make an unreadable banner: keep the first words of every long string. */
function shorten(value: unknown): unknown {
  if (typeof value === 'string')
    return value.length > 60 ? value.split(' ').slice(0, 6).join(' ') : value;
  if (Array.isArray(value)) return value.map(shorten);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shorten(v)]));
  }
  return value;
}

interface BannerFacts {
  worker: string;
  workerUrl: string;
  autoscalerUrl: string;
  modelUrl: string;
  modelLog: string;
  route?: string;
  payload?: unknown;
}

function banner(facts: BannerFacts): string {
  const { worker, workerUrl, autoscalerUrl, modelUrl, modelLog } = facts;
  const route = facts.route ?? '/generate_stream';
  const payload = JSON.stringify(
    facts.payload ?? { prompt: 'Hello, world', max_response_tokens: 20 },
  ).replaceAll('"', '\\"');
  return `
tsworker local stack
  worker          ${workerUrl}   (${worker})
  autoscaler      ${autoscalerUrl}   (signs auth_data, records reports: ${autoscalerUrl}/)
  model server    ${modelUrl}   (log: ${modelLog})

Call the worker with a signed request (auth_data comes from the autoscaler's /route/):

  AUTH=$(curl -s -X POST ${autoscalerUrl}/route/ -H 'content-type: application/json' \\
    -d '{"endpoint":"${worker}","api_key":"local","cost":100}')
  curl -N -X POST ${workerUrl}${route} -H 'content-type: application/json' \\
    -d "{\\"auth_data\\": $AUTH, \\"payload\\": ${payload}}"

Load-test it:  npm run test_load -- --worker ${worker} -n 100 -rps 10 -k local -e ${worker} -l
Stop with Ctrl-C.
`;
}
