/**
 * A local stand-in for Vast's serverless autoscaler: it signs routes to one worker (/route/), serves
 * its public key (/pubkey/) and records what a worker reports (/worker_status/, /delete_requests/),
 * so the whole stack runs on loopback and tests can see exactly what went over the wire. It also
 * signs TLS certificates like console.vast.ai's /sign_cert/, with a local CA (GET /ca.crt), so that
 * start_server.sh with USE_SSL=true can be rehearsed on loopback.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { canonicalMessage, signMessage } from '../../lib/auth/index.ts';
import type { AuthMode, PyJsonValue } from '../../lib/auth/index.ts';
import { isEntryPoint } from '../../lib/index.ts';
import { closeServer, httpUrl, isRecord, listen, readBody, sendJson, sendText } from './http.ts';
import { runProgram, serveUntilSignal } from './program.ts';
import { errorMessage } from '../../lib/internal/values.ts';

export type { AuthMode };

export interface LocalAutoscalerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks an ephemeral port. @default 0 */
  port?: number;
  /** The worker /route/ sends clients to; also set by `register` or a loaded worker's report. */
  workerUrl?: string;
  /** 'current' signs `{url}`; 'legacy' signs every field of a five-field auth_data. @default 'current' */
  authMode?: AuthMode;
  /** Reuse a key instead of generating an RSA-2048 pair (saves ~100 ms per autoscaler). */
  privateKey?: KeyObject;
  /** One line per request received, e.g. to stderr. */
  log?: (line: string) => void;
}

/** POST /route/ request body, as the vastai client sends it (protocol §3.4). */
export interface RouteRequest {
  endpoint: string;
  api_key: string;
  cost: number;
  request_idx?: number;
  replay_timeout?: number;
}

/** A READY /route/ answer: the whole object becomes the client's `auth_data`. */
export interface RouteReady {
  endpoint: string;
  url: string;
  cost: number;
  reqnum: number;
  /** Absent in legacy mode (five-field auth_data). */
  request_idx?: number;
  signature: string;
  /** Absent in legacy mode. */
  __request_id?: string;
}

export interface RouteNotReady {
  endpoint: string;
  status: string;
}

export type RouteResponse = RouteReady | RouteNotReady;

/**
 * The wire contract as the autoscaler checks it, independently of the worker's own types:
 * `/worker_status/` with its 17 fields (protocol §8.2) and `/delete_requests/` in the newest format
 * (§13). Strict: an extra field is a problem too.
 */
const workerStatusSchema = z.strictObject({
  id: z.number().int(),
  mtoken: z.string().nullable(),
  version: z.string(),
  loadtime: z.number(),
  cur_load: z.number(),
  rej_load: z.number(),
  new_load: z.number(),
  error_msg: z.string(),
  max_perf: z.number(),
  cur_perf: z.number(),
  cur_capacity: z.number(),
  max_capacity: z.number(),
  num_requests_working: z.number().int(),
  num_requests_recieved: z.number().int(),
  additional_disk_usage: z.number(),
  working_request_idxs: z.array(z.number().int()),
  url: z.string(),
});

/** POST /delete_requests/ body in the newest format (protocol §13). */
const deleteRequestsSchema = z.strictObject({
  worker_id: z.number().int(),
  mtoken: z.string().nullable(),
  requests: z.array(
    z.strictObject({
      request_idx: z.number().int(),
      success: z.boolean(),
      status: z.string(),
      entered_queue_at: z.number(),
      work_started_at: z.number().nullable(),
      work_completed_at: z.number().nullable(),
    }),
  ),
});

/**
 * The launcher's own error report to /worker_status/ (protocol §2.6): start_server.sh posts these
 * five fields when a launch step fails, as the Python launcher does. It conforms too.
 */
const launcherErrorSchema = z.strictObject({
  id: z.number().int(),
  mtoken: z.string().nullable(),
  version: z.string(),
  error_msg: z.string().min(1),
  url: z.string(),
});

/** POST /worker_status/ body: the 17 fields, in the order the worker sends them. */
export type WorkerStatusBody = z.infer<typeof workerStatusSchema>;
/** The launcher's five-field error report; recorded among the /worker_status/ posts. */
export type LauncherErrorBody = z.infer<typeof launcherErrorSchema>;
export type DeleteRequestsBody = z.infer<typeof deleteRequestsSchema>;
export type DeleteRequestEntry = DeleteRequestsBody['requests'][number];

/**
 * One POST as received. `body` is whatever arrived, typed as the contract says it should be;
 * `conforms` tells whether it really matches (every field present with its type, nothing extra)
 * and `problems` says what does not.
 */
export interface ReportRecord<Body> {
  /** Epoch milliseconds when the body had arrived. */
  at: number;
  body: Body;
  conforms: boolean;
  problems: string[];
  /** Status answered: 200, or 500/503 when a failure was injected. */
  status: number;
}

/**
 * A /worker_status/ post: the worker's 17-field `report`, or the launcher's five-field
 * `launcher_error` (its body then has only those five fields, whatever `body`'s type says). A
 * nonconforming post is classed by its shape: without `loadtime`, it is taken for a launcher error.
 */
export interface WorkerStatusRecord extends ReportRecord<WorkerStatusBody> {
  kind: 'report' | 'launcher_error';
}

/** A POST /sign_cert/: the CSR's subject and the instance it was for, and the answer's status. */
export interface CertificateRecord {
  at: number;
  /** The `instance_id` query parameter, as console.vast.ai's sign_cert takes it. */
  instanceId: string | null;
  /** 200 with a certificate, 400 for a body that is not a CSR, 500 when signing failed. */
  status: number;
  /** The certificate's subject, or the reason it was refused. */
  detail: string;
}

export interface RouteRecord {
  at: number;
  request: unknown;
  response: RouteResponse;
}

export interface LocalAutoscalerRecords {
  workerStatus: WorkerStatusRecord[];
  deleteRequests: ReportRecord<DeleteRequestsBody>[];
  routes: RouteRecord[];
  certificates: CertificateRecord[];
}

export interface LocalAutoscalerFailures {
  /** Answer 500 to the next N /worker_status/ posts (still recorded, with status 500). */
  failWorkerStatus?: number;
  /** Answer 500 to the next N /delete_requests/ posts. */
  failDeleteRequests?: number;
  /** Answer 503 to everything, /pubkey/ and /route/ included. */
  down?: boolean;
}

export interface LocalAutoscalerEvents {
  worker_status: [WorkerStatusRecord];
  delete_requests: [ReportRecord<DeleteRequestsBody>];
  route: [RouteRecord];
  certificate: [CertificateRecord];
}

const routeSchema = z.object({
  endpoint: z.string().min(1),
  api_key: z.string(),
  cost: z.number().optional(),
  request_idx: z.number().int().optional(),
  replay_timeout: z.number().optional(),
});

function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.length === 0 ? '(body)' : issue.path.join('.');
    return `${where}: ${issue.message}`;
  });
}

class BadRequest extends Error {}

const execFileAsync = promisify(execFile);

/** Runs openssl, turning "not installed" into a sentence that says what needs it. */
async function openssl(args: readonly string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('openssl', args, { cwd, encoding: 'utf8' });
    return stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('openssl is not installed: the local autoscaler signs certificates with it');
    }
    const stderr = (error as { stderr?: unknown }).stderr;
    throw new Error(`openssl ${args[0] ?? ''} failed: ${String(stderr ?? error).trim()}`);
  }
}

/**
 * The extensions of a certificate the local CA signs: a TLS server certificate valid for
 * 127.0.0.1 and localhost, so a client that trusts the CA verifies the worker's name on loopback,
 * and for 0.0.0.0, the address start_server.sh's CSR asks for (as Vast's signer gets it).
 */
const SERVER_EXTENSIONS = [
  'basicConstraints = critical, CA:FALSE',
  'keyUsage = critical, digitalSignature, keyEncipherment',
  'extendedKeyUsage = serverAuth',
  'subjectAltName = IP:127.0.0.1, DNS:localhost, IP:0.0.0.0',
  '',
].join('\n');

/** A certificate authority in a temporary directory: an EC P-256 key and a self-signed certificate. */
class LocalCa {
  private constructor(
    readonly dir: string,
    readonly certificatePem: string,
  ) {}

  static async create(): Promise<LocalCa> {
    const dir = await mkdtemp(join(tmpdir(), 'tsworker-local-ca-'));
    try {
      await writeFile(join(dir, 'server.ext'), SERVER_EXTENSIONS);
      await openssl(
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-subj',
          '/CN=tsworker local autoscaler CA',
          '-days',
          '30',
          '-addext',
          'basicConstraints = critical, CA:TRUE',
          '-addext',
          'keyUsage = critical, keyCertSign, cRLSign',
          '-keyout',
          'ca.key',
          '-out',
          'ca.crt',
        ],
        dir,
      );
      return new LocalCa(dir, await readFile(join(dir, 'ca.crt'), 'utf8'));
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Signs a PEM CSR; resolves with the PEM certificate and its subject. */
  async sign(csrPem: string): Promise<{ certificate: string; subject: string }> {
    const name = randomBytes(8).toString('hex');
    await writeFile(join(this.dir, `${name}.csr`), csrPem);
    try {
      await openssl(['req', '-in', `${name}.csr`, '-noout', '-verify'], this.dir);
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-set_serial',
          `0x${randomBytes(12).toString('hex')}`,
          '-days',
          '30',
          '-sha256',
          '-extfile',
          'server.ext',
          '-out',
          `${name}.crt`,
        ],
        this.dir,
      );
      const certificate = await readFile(join(this.dir, `${name}.crt`), 'utf8');
      const subject = await openssl(['x509', '-in', `${name}.crt`, '-noout', '-subject'], this.dir);
      return { certificate, subject: subject.trim().replace(/^subject=\s*/, '') };
    } finally {
      await rm(join(this.dir, `${name}.csr`), { force: true });
      await rm(join(this.dir, `${name}.crt`), { force: true });
    }
  }

  close(): Promise<void> {
    return rm(this.dir, { recursive: true, force: true });
  }
}

// Recorded bodies are whatever arrived, so anything read from them is checked first.
function requestsOf(body: unknown): unknown[] {
  const requests = isRecord(body) ? body['requests'] : undefined;
  return Array.isArray(requests) ? requests : [];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BadRequest('invalid JSON');
  }
}

export class LocalAutoscaler extends EventEmitter<LocalAutoscalerEvents> {
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
  readonly authMode: AuthMode;
  readonly records: LocalAutoscalerRecords = {
    workerStatus: [],
    deleteRequests: [],
    routes: [],
    certificates: [],
  };
  #server: Server;
  #url = '';
  #port = 0;
  #workerUrl: string | undefined;
  #failures: Required<LocalAutoscalerFailures> = {
    failWorkerStatus: 0,
    failDeleteRequests: 0,
    down: false,
  };
  #reqnums = new Map<string, number>();
  #nextRequestIdx = 1;
  #log: ((line: string) => void) | undefined;
  #closing: Promise<void> | undefined;
  /** Made on the first certificate request: most runs never sign one. */
  #ca: Promise<LocalCa> | undefined;

  /** Use `startLocalAutoscaler`; the constructor does not listen. */
  constructor(options: LocalAutoscalerOptions = {}) {
    super();
    this.authMode = options.authMode ?? 'current';
    this.#workerUrl = options.workerUrl;
    this.#log = options.log;
    this.privateKey =
      options.privateKey ?? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    this.publicKeyPem = createPublicKey(this.privateKey)
      .export({ type: 'spki', format: 'pem' })
      .toString();
    this.#server = createServer((req, res) => {
      this.#onRequest(req, res).catch((error: unknown) => {
        if (error instanceof BadRequest) sendJson(res, 400, { error: error.message });
        else if (!res.headersSent) sendJson(res, 500, { error: String(error) });
        else res.destroy();
      });
    });
  }

  get url(): string {
    return this.#url;
  }

  get port(): number {
    return this.#port;
  }

  /** The worker /route/ currently sends clients to. */
  get workerUrl(): string | undefined {
    return this.#workerUrl;
  }

  register(url: string): void {
    this.#workerUrl = url;
  }

  unregister(): void {
    this.#workerUrl = undefined;
  }

  /** Counts replace the remaining ones; `down` stays until set to false. */
  configure(failures: LocalAutoscalerFailures): void {
    if (failures.failWorkerStatus !== undefined) {
      this.#failures.failWorkerStatus = failures.failWorkerStatus;
    }
    if (failures.failDeleteRequests !== undefined) {
      this.#failures.failDeleteRequests = failures.failDeleteRequests;
    }
    if (failures.down !== undefined) this.#failures.down = failures.down;
  }

  /** The signature the autoscaler would put in auth_data for these fields, in this mode. */
  sign(fields: { readonly [key: string]: PyJsonValue }, mode: AuthMode = this.authMode): string {
    const unsigned: Record<string, PyJsonValue> = { ...fields };
    delete unsigned['signature'];
    return signMessage(this.privateKey, canonicalMessage(unsigned, mode));
  }

  /**
   * What POST /route/ answers for a registered worker, without the HTTP hop. `url` signs for
   * another worker than the registered one. Throws when no worker is registered and no `url` given.
   */
  issueAuthData(request: {
    endpoint: string;
    cost: number;
    request_idx?: number;
    url?: string;
  }): RouteReady {
    const url = request.url ?? this.#workerUrl;
    if (url === undefined) {
      throw new Error('local autoscaler: no worker registered (register(url) or pass url)');
    }
    const reqnum = (this.#reqnums.get(url) ?? 0) + 1;
    this.#reqnums.set(url, reqnum);
    if (this.authMode === 'legacy') {
      // Legacy auth_data has five fields and the signature covers the four others.
      const unsigned = { cost: request.cost, endpoint: request.endpoint, reqnum, url };
      return { ...unsigned, signature: this.sign(unsigned, 'legacy') };
    }
    const requestIdx = request.request_idx ?? this.#nextRequestIdx++;
    return {
      endpoint: request.endpoint,
      url,
      cost: request.cost,
      reqnum,
      request_idx: requestIdx,
      signature: this.sign({ url }, 'current'),
      __request_id: randomUUID().replaceAll('-', ''),
    };
  }

  /**
   * The local CA's certificate (PEM), made on first use: what a client trusts to reach a worker
   * whose certificate came from POST /sign_cert/ (also served at GET /ca.crt). Needs openssl.
   */
  caCertificate(): Promise<string> {
    return this.#localCa().then((ca) => ca.certificatePem);
  }

  #localCa(): Promise<LocalCa> {
    if (this.#ca === undefined) {
      this.#ca = LocalCa.create();
      // A failure (no openssl) is answered, and the next request tries again.
      this.#ca.catch(() => (this.#ca = undefined));
    }
    return this.#ca;
  }

  /**
   * Resolves with the first accepted (status 200) /worker_status/ body, past or future, that
   * matches; rejects after `timeoutMs` saying how many reports arrived and what the last was.
   */
  waitForReport(
    predicate: (body: WorkerStatusBody, record: ReportRecord<WorkerStatusBody>) => boolean,
    timeoutMs = 10_000,
  ): Promise<WorkerStatusBody> {
    return this.#waitFor('worker_status', this.records.workerStatus, predicate, timeoutMs);
  }

  /** Like `waitForReport`, for /delete_requests/ posts. */
  waitForDeleteRequests(
    predicate: (body: DeleteRequestsBody, record: ReportRecord<DeleteRequestsBody>) => boolean,
    timeoutMs = 10_000,
  ): Promise<DeleteRequestsBody> {
    return this.#waitFor('delete_requests', this.records.deleteRequests, predicate, timeoutMs);
  }

  #waitFor<Body>(
    event: 'worker_status' | 'delete_requests',
    past: readonly ReportRecord<Body>[],
    predicate: (body: Body, record: ReportRecord<Body>) => boolean,
    timeoutMs: number,
  ): Promise<Body> {
    // A predicate that throws on a malformed body just does not match; its error is kept for the
    // timeout message, since the right body may still come.
    let predicateError: unknown;
    const matches = (record: ReportRecord<Body>): boolean => {
      if (record.status !== 200 || !isRecord(record.body)) return false;
      try {
        return predicate(record.body, record);
      } catch (error) {
        predicateError = error;
        return false;
      }
    };
    const found = past.find(matches);
    if (found !== undefined) return Promise.resolve(found.body);
    return new Promise<Body>((resolve, reject) => {
      const listener = (record: ReportRecord<unknown>): void => {
        // The event carries the record just pushed onto `past`, so it has past's element type.
        const typed = record as ReportRecord<Body>;
        if (!matches(typed)) return;
        cleanup();
        resolve(typed.body);
      };
      const timer = setTimeout(() => {
        cleanup();
        const last = past.at(-1);
        const lastText = last === undefined ? '' : `; last: ${JSON.stringify(last.body)}`;
        const errorText =
          predicateError === undefined ? '' : `; the predicate threw: ${String(predicateError)}`;
        reject(
          new Error(
            `local autoscaler: no matching /${event}/ post within ${timeoutMs} ms ` +
              `(${past.length} received${lastText}${errorText})`,
          ),
        );
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(event, listener);
      };
      this.on(event, listener);
    });
  }

  async listen(host = '127.0.0.1', port = 0): Promise<void> {
    const address = await listen(this.#server, port, host);
    this.#port = address.port;
    this.#url = httpUrl(address);
  }

  close(): Promise<void> {
    this.#closing ??= closeServer(this.#server).then(async () => {
      const ca = await this.#ca?.catch(() => undefined);
      await ca?.close();
    });
    return this.#closing;
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    // The worker strips trailing slashes from REPORT_ADDR and adds '/route/'; accept both forms.
    const path = rawPath.length > 1 && rawPath.endsWith('/') ? rawPath.slice(0, -1) : rawPath;
    const method = req.method ?? 'GET';
    const text = await readBody(req);
    // The client went away mid-upload: nobody is left to answer.
    if (text === undefined) return;
    // Inspection pages stay up while the autoscaler plays dead.
    if (method === 'GET' && path === '/_records') return sendJson(res, 200, this.records);
    if (method === 'GET' && path === '/') return sendText(res, 200, this.summary());
    if (this.#failures.down) return sendJson(res, 503, { error: 'autoscaler is down' });
    switch (`${method} ${path}`) {
      case 'GET /pubkey':
        return sendText(res, 200, this.publicKeyPem);
      // console.vast.ai's path is /api/v0/sign_cert/?instance_id=<CONTAINER_ID>.
      case 'POST /sign_cert':
      case 'POST /api/v0/sign_cert':
        return this.#signCert(req, res, text);
      case 'GET /ca.crt':
        return sendText(res, 200, await this.caCertificate());
      case 'POST /route':
        return this.#route(res, parseJson(text));
      case 'POST /worker_status':
        return this.#workerStatus(res, parseJson(text));
      case 'POST /delete_requests':
        return this.#deleteRequests(res, parseJson(text));
      default:
        return sendJson(res, 404, { error: `not found: ${method} ${rawPath}` });
    }
  }

  #route(res: ServerResponse, body: unknown): void {
    const parsed = routeSchema.safeParse(body);
    if (!parsed.success) {
      sendJson(res, 400, {
        error: 'invalid /route/ request',
        issues: describeIssues(parsed.error),
      });
      return;
    }
    const { endpoint, cost = 0, request_idx } = parsed.data;
    const response: RouteResponse =
      this.#workerUrl === undefined
        ? {
            endpoint,
            status:
              'no workers ready: total workers: 0, loading workers: 0, standby workers: 0, error workers: 0',
          }
        : this.issueAuthData({
            endpoint,
            cost,
            ...(request_idx === undefined ? {} : { request_idx }),
          });
    const record: RouteRecord = { at: Date.now(), request: body, response };
    this.records.routes.push(record);
    this.#log?.(`route ${endpoint} -> ${'url' in response ? response.url : 'no workers ready'}`);
    sendJson(res, 200, response);
    this.emit('route', record);
  }

  #workerStatus(res: ServerResponse, body: unknown): void {
    const b: Partial<Record<string, unknown>> = isRecord(body) ? body : {};
    const kind = 'loadtime' in b ? 'report' : 'launcher_error';
    const check = (kind === 'report' ? workerStatusSchema : launcherErrorSchema).safeParse(body);
    const status = this.#takeFailure('failWorkerStatus');
    const record: WorkerStatusRecord = {
      at: Date.now(),
      body: body as WorkerStatusBody,
      conforms: check.success,
      problems: check.success ? [] : describeIssues(check.error),
      status,
      kind,
    };
    this.records.workerStatus.push(record);
    if (status === 200) this.#autoRegister(body);
    const nonconforming = check.success ? '' : ` (nonconforming: ${record.problems.join('; ')})`;
    this.#log?.(
      kind === 'launcher_error'
        ? `worker_status ${status} launcher error id=${String(b['id'])} ` +
            `error_msg=${JSON.stringify(b['error_msg'])}${nonconforming}`
        : `worker_status ${status} loadtime=${String(b['loadtime'])} cur_load=${String(b['cur_load'])} ` +
            `max_perf=${String(b['max_perf'])} working=${String(b['num_requests_working'])}` +
            (b['error_msg'] ? ` error_msg=${JSON.stringify(b['error_msg'])}` : '') +
            nonconforming,
    );
    sendJson(res, status, status === 200 ? {} : { error: 'injected failure' });
    this.emit('worker_status', record);
  }

  #deleteRequests(res: ServerResponse, body: unknown): void {
    const check = deleteRequestsSchema.safeParse(body);
    const status = this.#takeFailure('failDeleteRequests');
    const record: ReportRecord<DeleteRequestsBody> = {
      at: Date.now(),
      body: body as DeleteRequestsBody,
      conforms: check.success,
      problems: check.success ? [] : describeIssues(check.error),
      status,
    };
    this.records.deleteRequests.push(record);
    const requests = requestsOf(body);
    this.#log?.(
      `delete_requests ${status} ${requests.length} request(s)` +
        (check.success ? '' : ` (nonconforming: ${record.problems.join('; ')})`),
    );
    sendJson(res, status, status === 200 ? {} : { error: 'injected failure' });
    this.emit('delete_requests', record);
  }

  async #signCert(req: IncomingMessage, res: ServerResponse, csr: string): Promise<void> {
    const query = new URL(req.url ?? '/', 'http://local').searchParams;
    const record: CertificateRecord = {
      at: Date.now(),
      instanceId: query.get('instance_id'),
      status: 200,
      detail: '',
    };
    if (!csr.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
      record.status = 400;
      record.detail = 'the body is not a PEM certificate signing request';
    } else {
      try {
        const ca = await this.#localCa();
        const signed = await ca.sign(csr);
        record.detail = signed.subject;
        this.#finishCertificate(record);
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(signed.certificate);
        return;
      } catch (error) {
        // A CSR openssl cannot read is the client's fault; no openssl is ours.
        record.status = /is not installed/.test(String(error)) ? 500 : 400;
        record.detail = errorMessage(error);
      }
    }
    this.#finishCertificate(record);
    sendJson(res, record.status, { error: record.detail });
  }

  #finishCertificate(record: CertificateRecord): void {
    this.records.certificates.push(record);
    this.#log?.(
      `sign_cert ${record.status} instance_id=${String(record.instanceId)} ${record.detail}`,
    );
    this.emit('certificate', record);
  }

  #takeFailure(kind: 'failWorkerStatus' | 'failDeleteRequests'): number {
    if (this.#failures[kind] <= 0) return 200;
    this.#failures[kind]--;
    return 500;
  }

  // A loaded, healthy worker announces its URL in every report: route to it, like the real one.
  #autoRegister(body: unknown): void {
    if (!isRecord(body)) return;
    const { loadtime, error_msg: errorMsg, url } = body;
    if (typeof loadtime === 'number' && loadtime > 0 && !errorMsg && typeof url === 'string') {
      this.#workerUrl = url;
    }
  }

  /** The human-readable page served at GET /. */
  summary(): string {
    const { workerStatus, deleteRequests, routes, certificates } = this.records;
    const lastStatus = workerStatus.at(-1);
    const lastDelete = deleteRequests.at(-1);
    const lines = [
      `local autoscaler at ${this.#url} (auth mode: ${this.authMode})`,
      `worker: ${this.#workerUrl ?? '(none registered)'}`,
      `routes issued: ${routes.length}`,
      `/worker_status/ posts: ${workerStatus.length}`,
      `/delete_requests/ posts: ${deleteRequests.length} ` +
        `(${deleteRequests.reduce((n, r) => n + requestsOf(r.body).length, 0)} requests)`,
      `certificates signed: ${certificates.filter((c) => c.status === 200).length} ` +
        `(POST /sign_cert/?instance_id=…; the CA is at ${this.#url}/ca.crt)`,
      '',
      'last /worker_status/:',
      lastStatus === undefined
        ? '  (none yet)'
        : `  at ${new Date(lastStatus.at).toISOString()}, answered ${lastStatus.status}` +
          (lastStatus.kind === 'launcher_error' ? ", the launcher's error report" : '') +
          (lastStatus.conforms ? '' : `, nonconforming: ${lastStatus.problems.join('; ')}`) +
          `\n${JSON.stringify(lastStatus.body, null, 2)}`,
      '',
      'last /delete_requests/:',
      lastDelete === undefined
        ? '  (none yet)'
        : `  at ${new Date(lastDelete.at).toISOString()}, answered ${lastDelete.status}\n` +
          JSON.stringify(lastDelete.body, null, 2),
      '',
    ];
    return lines.join('\n');
  }
}

export async function startLocalAutoscaler(
  options: LocalAutoscalerOptions = {},
): Promise<LocalAutoscaler> {
  const autoscaler = new LocalAutoscaler(options);
  await autoscaler.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return autoscaler;
}

/**
 * Runs the autoscaler from the environment (AUTOSCALER_HOST, AUTOSCALER_PORT=8081, WORKER_URL,
 * AUTH_MODE) and prints one JSON line `{"event":"listening","url":...}` for a parent process.
 */
export async function main(): Promise<LocalAutoscaler> {
  const rawPort = process.env['AUTOSCALER_PORT'];
  const port = rawPort === undefined || rawPort === '' ? 8081 : Number(rawPort);
  if (!Number.isInteger(port) || port < 0) throw new Error('AUTOSCALER_PORT must be a port number');
  const authMode = process.env['AUTH_MODE'] === 'legacy' ? 'legacy' : 'current';
  const workerUrl = process.env['WORKER_URL'];
  const autoscaler = await startLocalAutoscaler({
    host: process.env['AUTOSCALER_HOST'] || '127.0.0.1',
    port,
    authMode,
    ...(workerUrl ? { workerUrl } : {}),
    log: (line) => process.stderr.write(`[autoscaler] ${line}\n`),
  });
  return serveUntilSignal(autoscaler);
}

if (isEntryPoint(import.meta.url)) runProgram('local autoscaler', main);
