/**
 * wrk as the load generator for throughput and latency: one C thread with an epoll loop costs the
 * two cores far less than any node client, so the servers, not the client, set the numbers. POST
 * bodies come from a Lua script; the tsworker body gets a fresh reqnum and request_idx per request.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Non-2xx/3xx answers, connect/read/write errors and timeouts: any makes the cell suspect. */
  readonly errors: number;
}

export function wrkVersion(): string {
  const out = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  return (/wrk (\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown').trim();
}

/** Lua long strings need no escaping as long as the text has no `]==]`. */
function lua(text: string): string {
  if (text.includes(']==]')) throw new Error('body contains ]==]');
  return `[==[${text}]==]`;
}

const DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50":%f,"p90":%f,"p99":%f,"max":%f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

/** A script that POSTs the same body every time. */
export function staticScript(dir: string, name: string, path: string, body: string): string {
  const file = join(dir, `${name}.lua`);
  writeFileSync(
    file,
    `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local req
-- Formatted in init, once wrk has set the Host header (HTTP/1.1 servers answer 400 without it).
init = function(args) req = wrk.format("POST", ${lua(path)}, nil, ${lua(body)}) end
request = function() return req end
${DONE}`,
  );
  return file;
}

/** A script that POSTs `{auth_data, payload}` with a counter in reqnum and request_idx. */
export function signedScript(
  dir: string,
  path: string,
  authData: { cost: number; endpoint: string; signature: string; url: string },
  payloadJson: string,
): string {
  const file = join(dir, 'tsworker.lua');
  const head = `{"auth_data":{"cost":${authData.cost},"endpoint":${JSON.stringify(authData.endpoint)},"reqnum":`;
  const tail = `,"signature":${JSON.stringify(authData.signature)},"url":${JSON.stringify(authData.url)}},"payload":${payloadJson}}`;
  writeFileSync(
    file,
    `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", ${lua(path)}, nil, ${lua(head)} .. n .. ${lua(',"request_idx":')} .. n .. ${lua(tail)})
end
${DONE}`,
  );
  return file;
}

export async function runWrk(
  url: string,
  script: string,
  connections: number,
  seconds: number,
): Promise<WrkResult> {
  const child = spawn(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, url],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const line = /WRK_JSON (.*)/.exec(out)?.[1];
  if (code !== 0 || line === undefined)
    throw new Error(`wrk failed (exit ${String(code)}):\n${out}`);
  const raw = JSON.parse(line) as {
    requests: number;
    duration_us: number;
    errors: number;
    p50: number;
    p90: number;
    p99: number;
    max: number;
  };
  const secondsRun = raw.duration_us / 1e6;
  return {
    requests: raw.requests,
    seconds: secondsRun,
    rps: raw.requests / secondsRun,
    p50: raw.p50 / 1000,
    p90: raw.p90 / 1000,
    p99: raw.p99 / 1000,
    max: raw.max / 1000,
    errors: raw.errors,
  };
}
