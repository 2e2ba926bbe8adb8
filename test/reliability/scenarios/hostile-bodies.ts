/**
 * Hostile bodies: thousands of fast-check-generated requests on fresh connections, with a valid
 * signed request every 100 to show the worker still serves. Pass: no 5xx, nothing hung, every
 * forged signature 401, the process alive, the reports consistent.
 */
import { HOSTILE_KINDS, hostileRequests, type HostileRequest } from '../hostile-bodies.ts';
import { checkAlive, checkReportsConsistent } from '../support/checks.ts';
import { call, pool, rawExchange } from '../support/http.ts';
import { fmt, Verdict, type Scenario } from '../support/scenario.ts';
import { helloPayload, signedBody, startStack } from '../support/stack.ts';
import { Tally } from '../support/timing.ts';

/** The fixed seed: change it only on purpose, and say so in the README's figures. */
export const HOSTILE_SEED = 20_261_124;
const CONCURRENCY = 16;
const DEADLINE_MS = 15_000;
const CONTROL_EVERY = 100;

export const hostileBodiesScenario: Scenario = {
  name: 'hostile-bodies',
  timeLimitMs: (quick) => (quick ? 150_000 : 420_000),
  async run({ quick, progress }) {
    const count = quick ? 2_000 : 10_000;
    const verdict = new Verdict();
    const stack = await startStack({ name: 'hostile' });
    const control = pool(stack.worker.url, 2);
    try {
      const ticket = await stack.autoscaler.route();
      const statuses = new Tally();
      const byKind = new Map(HOSTILE_KINDS.map((kind) => [kind, new Tally()]));
      const examples: string[] = [];
      const sessions: { id: string; auth: unknown }[] = [];
      let fiveXx = 0;
      let hung = 0;
      let silent = 0;
      let forgedNot401 = 0;
      let controlOk = 0;
      let controlSent = 0;
      const note = (request: HostileRequest, what: string): void => {
        if (examples.length < 5) examples.push(`${request.kind} (${request.variant}): ${what}`);
      };

      const requests = hostileRequests(ticket, count, HOSTILE_SEED);
      let sent = 0;
      const lane = async (): Promise<void> => {
        for (;;) {
          const next = requests.next();
          if (next.done === true) return;
          const request = next.value;
          const index = sent++;
          if (index % 1_000 === 0 && index > 0) progress(`hostile bodies: ${index}/${count}`);
          if (index % CONTROL_EVERY === 0) {
            controlSent++;
            const answer = await call(
              control,
              '/generate',
              signedBody(ticket, 60_000_000 + index, helloPayload('still serving?', 2)),
              { deadlineMs: DEADLINE_MS },
            );
            if (answer.kind === 'answered' && answer.status === 200) controlOk++;
          }
          const port = request.listener === 'main' ? stack.worker.port : stack.worker.httpPort;
          const outcome = await rawExchange(port, request.wire, {
            deadlineMs: DEADLINE_MS,
            halfClose: request.halfClose,
          });
          const key =
            outcome.ended === 'deadline'
              ? 'hung'
              : outcome.status === undefined
                ? 'no answer'
                : String(outcome.status);
          statuses.add(key);
          byKind.get(request.kind)?.add(key);
          if (outcome.ended === 'deadline') {
            hung++;
            note(request, `no answer within ${DEADLINE_MS} ms`);
          } else if (outcome.status === undefined && !request.halfClose) {
            silent++;
            note(request, `closed without an answer (${outcome.error ?? 'no error'})`);
          }
          if (outcome.status !== undefined && outcome.status >= 500) {
            fiveXx++;
            note(request, `${outcome.status} ${outcome.body.slice(0, 160)}`);
          }
          if (request.mustBeUnauthorized && outcome.status !== 401) {
            forgedNot401++;
            note(request, `forged signature answered ${String(outcome.status)}`);
          }
          if (request.route === '/session/create' && outcome.status === 201) {
            sessions.push({ id: sessionIdOf(outcome.body), auth: authDataOf(request.body) });
          }
        }
      };
      const startedAt = Date.now();
      await Promise.all(Array.from({ length: CONCURRENCY }, lane));
      const durationMs = Date.now() - startedAt;

      // Sessions a hostile body managed to open hold load until they close: close them.
      let ended = 0;
      for (const session of sessions) {
        const answer = await call(
          control,
          '/session/end',
          JSON.stringify({ session_id: session.id, session_auth: session.auth }),
          { deadlineMs: DEADLINE_MS },
        );
        if (answer.kind === 'answered' && answer.status < 500) ended++;
      }
      const trafficEnd = Date.now();
      const alive = await checkAlive(stack, verdict);

      verdict
        .figure(`${fmt.int(sent)} bodies (seed ${HOSTILE_SEED})`, 'bodies', sent)
        .figure(`${fiveXx} 5xx`, 'fiveXx', fiveXx)
        .figure(`${hung} hung`, 'hung', hung)
        .figure(`${forgedNot401} forged not 401`, 'forgedNot401', forgedNot401)
        .figure(`valid served ${controlOk}/${controlSent}`)
        .figure(`sessions opened/ended ${sessions.length}/${ended}`)
        .figure(`statuses ${statuses.toString()}`, 'statuses', statuses.toString())
        .figure(`${fmt.s(durationMs)} of traffic`)
        .check(sent === count, `only ${sent} of ${count} bodies were sent`)
        .check(fiveXx === 0, `${fiveXx} answers were 5xx`)
        .check(hung === 0, `${hung} requests hung past ${DEADLINE_MS} ms`)
        .check(silent === 0, `${silent} well-formed requests were closed without an answer`)
        .check(forgedNot401 === 0, `${forgedNot401} forged signatures were not answered 401`)
        .check(controlOk === controlSent, `valid requests served ${controlOk}/${controlSent}`)
        .check(ended === sessions.length, `${sessions.length - ended} sessions could not be ended`);
      if (examples.length > 0) verdict.check(false, `e.g. ${examples.join(' | ')}`);
      for (const [kind, tally] of byKind) progress(`  ${kind}: ${tally.toString()}`);
      if (alive) await checkReportsConsistent(stack, verdict, trafficEnd);
      return verdict;
    } finally {
      await control.close();
      await stack.close();
    }
  },
};

function sessionIdOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { session_id?: unknown };
    return typeof parsed.session_id === 'string' ? parsed.session_id : '';
  } catch {
    return '';
  }
}

function authDataOf(body: Buffer): unknown {
  try {
    return (JSON.parse(body.toString('utf8')) as { auth_data?: unknown }).auth_data;
  } catch {
    return undefined;
  }
}
