/**
 * wrk as the load generator for throughput and latency: one C thread with an epoll loop costs the
 * two cores far less than any node client, so the servers, not the client, set the numbers. POST
 * bodies come from a Lua script that walks through a pool of distinct prompts; signed bodies get a
 * fresh reqnum and request_idx per request.
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

export interface PoolScriptOptions {
  /** The prompt pool: one JSON string literal per line (bench/traffic.ts). */
  readonly pool: string;
  readonly path: string;
  /** `max_response_tokens` of every payload. */
  readonly tokens: number;
  /** Signed worker bodies `{auth_data, payload}`; undefined sends the payload alone. */
  readonly signed?: { cost: number; endpoint: string; signature: string; url: string };
  /** Every `every`-th request goes to this path with this many tokens instead (the soak's mix). */
  readonly alternate?: { path: string; tokens: number; every: number };
}

/**
 * A script that walks through the prompt pool, one prompt per request, from the offset given as
 * its first argument (`wrk ... -- <offset>`), so successive runs do not replay the same bodies.
 * The pool is read in `init`, before wrk starts its clock. Signed bodies carry a fresh reqnum and
 * request_idx per request.
 */
export function poolScript(dir: string, name: string, options: PoolScriptOptions): string {
  const file = join(dir, `${name}.lua`);
  const signed = options.signed;
  const head =
    signed === undefined
      ? ''
      : `{"auth_data":{"cost":${signed.cost},"endpoint":${JSON.stringify(signed.endpoint)},"reqnum":`;
  const tail =
    signed === undefined
      ? ''
      : `,"signature":${JSON.stringify(signed.signature)},"url":${JSON.stringify(signed.url)}},"payload":`;
  const body = (tokens: string) => {
    const payload = `'{"prompt":' .. p .. ${lua(`,"max_response_tokens":${tokens}}`)}`;
    return signed === undefined
      ? payload
      : `${lua(head)} .. k .. ${lua(',"request_idx":')} .. k .. ${lua(tail)} .. ${payload} .. '}'`;
  };
  const alt = options.alternate;
  writeFileSync(
    file,
    `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prompts = {}
local size = 0
local offset = 0
local n = 0
init = function(args)
  offset = tonumber(args[1]) or 0
  for line in io.lines(${lua(options.pool)}) do
    size = size + 1
    prompts[size] = line
  end
end
request = function()
  n = n + 1
  local k = offset + n
  local p = prompts[k % size + 1]
${
  alt === undefined
    ? ''
    : `  if n % ${alt.every} == 0 then
    return wrk.format(nil, ${lua(alt.path)}, nil, ${body(String(alt.tokens))})
  end
`
}  return wrk.format(nil, ${lua(options.path)}, nil, ${body(String(options.tokens))})
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
  scriptArgs: readonly string[] = [],
): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, url];
  if (scriptArgs.length > 0) args.push('--', ...scriptArgs);
  const child = spawn('wrk', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
