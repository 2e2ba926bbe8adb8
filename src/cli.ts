#!/usr/bin/env node
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
// Only light modules here: `--help` and `--version` answer without loading the framework.
import {
  ConfigError,
  ENVIRONMENT_VARIABLE_DOCS,
  PUBLIC_PORT_VARIABLE_DOC,
  tsworkerVersion,
} from '../lib/config.ts';
import { DefinitionError, StartupError } from '../lib/errors.ts';
import { INIT_USAGE } from './commands/init.ts';

/** workers/ next to src/ (dist/workers next to dist/src): as src/commands/load-worker.ts finds it. */
const WORKERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'workers');

const USAGE = `Usage: tsworker <command> [arguments]

Commands:
  start <worker>    Run one worker (a folder under workers/ or a path), configured by the environment
  dev [worker]      Run the local stack: example model server, local autoscaler and a worker (default hello_world)
  init <name>       Write a worker folder ./<name>/ from a preset
  test_load ...     Load-test an endpoint or a worker
  help [command]    Show this text, or a command's

Options:
  -h, --help        this text; "tsworker <command> --help" for a command's
  -v, --version     tsworker's version
`;

/** The workers shipped under workers/, for the help text. */
function shippedWorkers(): string[] {
  try {
    return readdirSync(WORKERS_DIR, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .filter((entry) =>
        ['server.ts', 'server.js'].some((file) => existsSync(join(WORKERS_DIR, entry.name, file))),
      )
      .map((entry) => entry.name)
      .sort();
  } catch {
    return [];
  }
}

/** Lines of `NAME  meaning`, the names padded to one column. */
function table(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([name]) => name.length)) + 2;
  return rows.map(([name, meaning]) => `  ${name.padEnd(width)}${meaning}`).join('\n');
}

function startUsage(): string {
  const variables = Object.entries(ENVIRONMENT_VARIABLE_DOCS) as [string, string][];
  const workers = shippedWorkers();
  return `Usage: tsworker start <worker>

Runs one worker. <worker> is a folder name under workers/${workers.length > 0 ? ` (${workers.join(', ')})` : ''}
or a path to a folder holding server.ts. SIGTERM or SIGINT drains it gracefully; a second signal exits at once.
A worker that cannot start reports why to REPORT_ADDR (the error beacon) until it is stopped.

Environment variables (an empty value counts as unset; a worker may read more, see its README):
${table([...variables.slice(0, 7), PUBLIC_PORT_VARIABLE_DOC, ...variables.slice(7)])}

Example:  UNSECURED=true WORKER_PORT=3000 MODEL_SERVER_URL=http://127.0.0.1:5001 tsworker start hello_world
`;
}

const DEV_USAGE = `Usage: tsworker dev [worker]        (npm start -- [worker])

Runs the whole local stack on 127.0.0.1: the worker's model server (its engine's fake, or the
example model server), the local autoscaler and the worker (default hello_world), then prints how
to call it and load-test it. Ctrl-C drains the worker and stops the stack.

Environment variables:
${table([
  ['WORKER_PORT', "the worker's port (default 3000)"],
  ['AUTOSCALER_PORT', "the local autoscaler's port (default 8081)"],
  ['MODEL_PORT', "the model server's port (default 5001; ephemeral for an engine's fake)"],
  ['MODEL_LOG', "the model server's log (default a file under the temporary directory)"],
  ['TOKEN_DELAY_MS', "the example model server's delay per token (default 10)"],
  ['LOAD_DELAY_MS', "an engine fake's model loading time (default 0)"],
  ['', 'and every variable of "tsworker start --help" but the Vast ones, which dev sets'],
])}
`;

/** The help text of each command, for `tsworker <command> --help` and `tsworker help <command>`. */
const COMMAND_USAGE: Readonly<Record<string, () => string | Promise<string>>> = {
  start: startUsage,
  dev: () => DEV_USAGE,
  init: () => INIT_USAGE,
  test_load: testLoadUsage,
  'test-load': testLoadUsage,
  help: () => USAGE,
};

async function testLoadUsage(): Promise<string> {
  return (await import('../lib/test-harness/cli.ts')).TEST_LOAD_USAGE;
}

/** Parses a command's arguments: `-h`/`--help` and positionals, nothing else. */
function parseCommand(command: string, args: readonly string[], maxPositionals: number) {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: { help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    // parseArgs' first sentence ("Unknown option '--x'") is the news; the rest is noise.
    const message = error instanceof Error ? (error.message.split('. ')[0] ?? '') : String(error);
    throw new UsageError(`${message} (tsworker ${command} --help)`);
  }
  const positionals = parsed.positionals;
  if (parsed.values.help !== true && positionals.length > maxPositionals) {
    throw new UsageError(
      `unexpected arguments: ${positionals.slice(maxPositionals).join(' ')} (tsworker ${command} --help)`,
    );
  }
  return { help: parsed.values.help === true, positionals };
}

/** A command's help was asked for anywhere in its arguments. */
const asksForHelp = (args: readonly string[]): boolean =>
  args.includes('--help') || args.includes('-h');

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { help, positionals } = parseCommand('start', rest, 1);
      if (help) return print(startUsage());
      const name = positionals[0];
      if (name === undefined)
        throw new UsageError(
          'start needs a worker name or path, e.g. "tsworker start hello_world" (tsworker start --help)',
        );
      const { startCommand } = await import('./commands/start.ts');
      await startCommand(name);
      return;
    }
    case 'dev': {
      const { help, positionals } = parseCommand('dev', rest, 1);
      if (help) return print(DEV_USAGE);
      const { devCommand } = await import('./commands/dev.ts');
      await devCommand(positionals[0]);
      return;
    }
    case 'init': {
      if (asksForHelp(rest)) return print(INIT_USAGE);
      const { initCommand } = await import('./commands/init.ts');
      process.exitCode = initCommand(rest);
      return;
    }
    case 'test_load':
    case 'test-load': {
      if (asksForHelp(rest)) return print(await testLoadUsage());
      const { testLoadCommand } = await import('./commands/test-load.ts');
      process.exitCode = await testLoadCommand(rest);
      return;
    }
    case 'help': {
      const { positionals } = parseCommand('help', rest, 1);
      const topic = positionals[0];
      if (topic === undefined) return print(USAGE);
      const usage = COMMAND_USAGE[topic];
      if (usage === undefined) throw new UsageError(`no command "${topic}"\n\n${USAGE}`);
      return print(await usage());
    }
    case undefined:
    case '--help':
    case '-h':
      return print(USAGE);
    case '--version':
    case '-v':
      return print(`${tsworkerVersion()}\n`);
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

function print(text: string): void {
  process.stdout.write(text);
}

class UsageError extends Error {}

/** The errors whose message says it all: shown alone, without a stack trace. */
function isKnown(error: unknown): error is Error {
  return (
    error instanceof ConfigError ||
    error instanceof DefinitionError ||
    error instanceof StartupError ||
    error instanceof UsageError
  );
}

/**
 * One line for a fatal error (a ConfigError with several problems lists them, one a line): the
 * message of a known error, its cause never repeated; the stack of anything else, which is a bug.
 */
function describe(error: unknown): string {
  if (isKnown(error)) return error.message;
  const port = portHint(error);
  if (port !== undefined) return port;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/**
 * `tsworker dev`'s stand-ins bind their ports themselves (the worker's listeners name WORKER_PORT
 * on their own): a busy one names the variable that moves it.
 */
function portHint(error: unknown): string | undefined {
  const failure = error as (NodeJS.ErrnoException & { port?: unknown }) | undefined;
  if (failure?.code !== 'EADDRINUSE' || argvCommand !== 'dev') return undefined;
  const port = Number(failure.port);
  const env = process.env;
  const candidates: [string, number][] = [
    ['AUTOSCALER_PORT', Number(env['AUTOSCALER_PORT'] || 8081)],
    ['MODEL_PORT', Number(env['MODEL_PORT'] || 5001)],
  ];
  const variable = candidates.find(([, value]) => value === port)?.[0];
  return `port ${port} is in use (EADDRINUSE): set ${variable ?? 'AUTOSCALER_PORT or MODEL_PORT'} to a free port`;
}

const argvCommand = process.argv[2];

// `tsworker test_load --help | head`: a reader that stops early is no error for a command that
// only prints. A worker (start, dev) keeps its default: its logs have nowhere else to go.
if (argvCommand !== 'start' && argvCommand !== 'dev') {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // src/commands/start.ts' StartupFailed, known by name: that module is loaded only to start.
  if (error instanceof Error && error.name === 'StartupFailed') {
    // The error beacon keeps reporting the failure; the process stays up until a signal stops it.
    process.stderr.write(
      `tsworker: ${describe(error.cause)} (reported to the autoscaler until stopped)\n`,
    );
    return;
  }
  process.stderr.write(`tsworker: ${describe(error)}\n`);
  // 2 for a command line that cannot run, as init and test_load do; 1 for a failed start.
  process.exit(error instanceof UsageError ? 2 : 1);
});
