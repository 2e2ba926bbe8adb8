// Protocol reference §12.19: the reference forced the root logger to DEBUG for the whole process.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../../lib/entry-server.ts';

function linesAt(level: ReturnType<typeof loadConfig>['logLevel']): string[] {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level, pretty: false, destination });
  logger.debug('debug line');
  logger.info('info line');
  return lines;
}

describe('ref-19: the log level follows LOG_LEVEL', () => {
  it('logs at info by default, without debug lines', () => {
    const config = loadConfig({ UNSECURED: 'true' });
    expect(config.logLevel).toBe('info');
    expect(
      linesAt(config.logLevel).map((l) => (JSON.parse(l) as { message: string }).message),
    ).toEqual(['info line']);
  });

  it('logs debug lines only when LOG_LEVEL=debug', () => {
    const config = loadConfig({ UNSECURED: 'true', LOG_LEVEL: 'debug' });
    expect(linesAt(config.logLevel)).toHaveLength(2);
  });
});
