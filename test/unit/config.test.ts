import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, publicUrl } from '../../lib/config.ts';

describe('configuration from the environment', () => {
  it('needs no Vast-only variable for local development in UNSECURED mode', () => {
    const config = loadConfig({ UNSECURED: 'true' });
    expect(config.workerPort).toBe(3000);
    expect(config.workerHttpPort).toBe(3001);
    expect(config.reportAddrs).toEqual([]);
    expect(config.unsecured).toBe(true);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('lists every problem in one error', () => {
    let error: unknown;
    try {
      loadConfig({
        WORKER_PORT: 'abc',
        USE_SSL: 'yes',
        UNSECURED: 'maybe',
        REPORT_ADDR: 'http://a, not a url',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/WORKER_PORT/);
    expect(problems).toMatch(/USE_SSL/);
    expect(problems).toMatch(/UNSECURED/);
    expect(problems).toMatch(/REPORT_ADDR: "not a url"/);
    expect(problems).toMatch(/CONTAINER_ID: required/);
    expect(problems).toMatch(/PUBLIC_IPADDR: required/);
  });

  it('requires REPORT_ADDR in secured mode, because the public key comes from it', () => {
    expect(() => loadConfig({})).toThrow(/REPORT_ADDR: required/);
  });

  it('reports a missing REPORT_ADDR together with an unrelated bad variable', () => {
    expect(() => loadConfig({ WORKER_PORT: 'abc' })).toThrow(
      /WORKER_PORT[\s\S]*REPORT_ADDR: required/,
    );
  });

  it('treats an empty string as unset', () => {
    const config = loadConfig({ UNSECURED: 'true', MASTER_TOKEN: '', WORKER_PORT: '' });
    expect(config.masterToken).toBeUndefined();
    expect(config.workerPort).toBe(3000);
  });

  it('splits REPORT_ADDR on commas, trimming spaces and trailing slashes', () => {
    const config = loadConfig({
      REPORT_ADDR: 'https://run.vast.ai/, http://127.0.0.1:8081//',
      CONTAINER_ID: '42',
      PUBLIC_IPADDR: '1.2.3.4',
    });
    expect(config.reportAddrs).toEqual(['https://run.vast.ai', 'http://127.0.0.1:8081']);
  });

  it('builds the reported URL from PUBLIC_IPADDR and VAST_TCP_PORT_<WORKER_PORT>, https with USE_SSL=true', () => {
    const env = {
      WORKER_PORT: '7122',
      REPORT_ADDR: 'http://a',
      CONTAINER_ID: '1',
      PUBLIC_IPADDR: '1.2.3.4',
      VAST_TCP_PORT_7122: '40123',
    };
    expect(publicUrl(loadConfig(env))).toBe('http://1.2.3.4:40123');
    expect(publicUrl(loadConfig({ ...env, USE_SSL: 'true' }))).toBe('https://1.2.3.4:40123');
    expect(loadConfig(env).workerHttpPort).toBe(7123);
  });

  it('parses UNSECURED like Python strtobool', () => {
    for (const word of ['y', 'YES', 't', 'True', 'on', '1'])
      expect(loadConfig({ UNSECURED: word }).unsecured).toBe(true);
    for (const word of ['n', 'No', 'f', 'false', 'OFF', '0']) {
      expect(
        loadConfig({
          UNSECURED: word,
          REPORT_ADDR: 'http://a',
          CONTAINER_ID: '1',
          PUBLIC_IPADDR: 'x',
        }).unsecured,
      ).toBe(false);
    }
  });
});

describe('docs/environment-variables.md', () => {
  it('documents every environment variable the worker reads, with its default', async () => {
    const { readFile } = await import('node:fs/promises');
    const { ENVIRONMENT_VARIABLES } = await import('../../lib/config.ts');
    const readme = await readFile(
      new URL('../../docs/environment-variables.md', import.meta.url),
      'utf8',
    );
    const documented = new Set([...readme.matchAll(/^\| `([A-Z_<>]+)`/gm)].map((m) => m[1]));
    for (const line of readme.matchAll(/^\| `([A-Z_]+)`, `([A-Z_]+)`/gm)) documented.add(line[2]);
    const missing = ENVIRONMENT_VARIABLES.filter((name) => !documented.has(name));
    expect(missing).toEqual([]);
    expect(documented.has('VAST_TCP_PORT_<WORKER_PORT>')).toBe(true);
  });
});
