/**
 * Spawns a stand-in (example model server or local autoscaler) as its own process, the way
 * `npm start` and the end-to-end tests run them, and resolves once it says where it listens.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export type StandInScript = 'example-model-server' | 'local-autoscaler';

export interface SpawnedStandIn {
  url: string;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s; resolves with how the process ended. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START_DEADLINE_MS = 20_000;

// Port 0 unless the caller asks for one, so parallel test files never collide on 5001/8081.
const PORT_VARIABLE: Record<StandInScript, string> = {
  'example-model-server': 'MODEL_PORT',
  'local-autoscaler': 'AUTOSCALER_PORT',
};

export async function spawnStandIn(
  script: StandInScript,
  env: Record<string, string> = {},
): Promise<SpawnedStandIn> {
  const scriptPath = fileURLToPath(new URL(`../../src/stand-ins/${script}.ts`, import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', scriptPath], {
    cwd: REPO_ROOT,
    env: { ...process.env, [PORT_VARIABLE[script]]: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  // A spawn failure emits 'error' instead; the start-up promise below reports it.
  const exited = (once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>).catch(
    (): [number | null, NodeJS.Signals | null] => [child.exitCode, child.signalCode],
  );

  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const fail = (why: string): void => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`spawnStandIn(${script}): ${why}\nstderr:\n${stderr}`));
    };
    const onData = (chunk: string): void => {
      stdout += chunk;
      let newline: number;
      while ((newline = stdout.indexOf('\n')) !== -1) {
        const line = stdout.slice(0, newline).trim();
        stdout = stdout.slice(newline + 1);
        let message: unknown;
        try {
          message = JSON.parse(line);
        } catch {
          continue;
        }
        if (isListening(message)) {
          cleanup();
          resolve(message.url);
          return;
        }
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      fail(`exited before listening (code ${String(code)}, signal ${String(signal)})`);
    const onError = (error: Error): void => fail(`could not start: ${error.message}`);
    const timer = setTimeout(
      () => fail(`no "listening" line within ${START_DEADLINE_MS} ms`),
      START_DEADLINE_MS,
    );
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.on('exit', onExit);
    child.on('error', onError);
  });
  // Keep draining stdout so a chatty child never blocks on a full pipe.
  child.stdout.resume();

  return {
    url,
    child,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        const [code, signal] = await exited;
        clearTimeout(killer);
        return { code, signal };
      }
      return { code: child.exitCode, signal: child.signalCode };
    },
  };
}

function isListening(message: unknown): message is { event: 'listening'; url: string } {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as Record<string, unknown>)['event'] === 'listening' &&
    typeof (message as Record<string, unknown>)['url'] === 'string'
  );
}
