#!/usr/bin/env node
import { ConfigError, DefinitionError, StartupError } from '../lib/index.ts';
import { devCommand } from './commands/dev.ts';
import { StartupFailed, startCommand } from './commands/start.ts';

const USAGE = `Usage: tsworker <command>

Commands:
  start <worker>    Run one worker (a folder under workers/ or a path), configured by the environment
  dev [worker]      Run the local stack: example model server, local autoscaler and a worker (default hello_world)
  init <name>       Write a worker folder ./<name>/ from a preset (tsworker init --help)
  test_load ...     Load-test an endpoint or a worker (tsworker test_load --help)
  help              Show this text
`;

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const name = rest[0];
      if (name === undefined)
        throw new UsageError(
          'start needs a worker name or path, e.g. "tsworker start hello_world"',
        );
      await startCommand(name);
      return;
    }
    case 'init': {
      const { initCommand } = await import('./commands/init.ts');
      process.exitCode = initCommand(rest);
      return;
    }
    case 'dev':
      await devCommand(rest[0]);
      return;
    case 'test_load':
    case 'test-load': {
      const { testLoadCommand } = await import('./commands/test-load.ts');
      process.exitCode = await testLoadCommand(rest);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).catch((error: unknown) => {
  // The error beacon keeps reporting the failure; the process stays up until a signal stops it.
  if (error instanceof StartupFailed) return;
  // Known start-up problems get one clear message, not a stack trace.
  if (
    error instanceof ConfigError ||
    error instanceof DefinitionError ||
    error instanceof StartupError ||
    error instanceof UsageError
  ) {
    process.stderr.write(`tsworker: ${error.message}\n`);
  } else {
    process.stderr.write(
      `tsworker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  }
  process.exit(1);
});
