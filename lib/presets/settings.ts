import { z } from 'zod';
import { ConfigError } from '../config.ts';
import type { LogActionConfig, WorkerEnv } from '../worker.ts';

/** What an engine's worker folder states: the settings the reference hard-codes per engine. */
export interface EngineDefaults {
  /** Worker name, e.g. `vllm`. */
  readonly name: string;
  /** Where the engine listens. `MODEL_SERVER_URL` overrides it. */
  readonly modelServerUrl: string;
  /** The engine's log. `MODEL_LOG` overrides it. */
  readonly modelLog: string;
  /** The engine's load, fatal and info lines. `MODEL_*_LOG_MSG(S)` override each list. */
  readonly logActions: LogActionConfig;
  /** Health route. `MODEL_HEALTH_ENDPOINT` overrides it. @default '/health' */
  readonly healthPath?: string;
  /** Variables holding the model id, tried after `MODEL_NAME`, e.g. `['VLLM_MODEL']`. */
  readonly modelEnv?: readonly string[];
}

/** The engine's settings after the environment's overrides. */
export interface EngineSettings {
  readonly modelId: string | undefined;
  /** Which variable the model id came from, for messages. */
  readonly modelIdSource: string | undefined;
  readonly logActions: LogActionConfig;
  readonly modelLog: string;
  readonly modelServerUrl: string;
  readonly modelHealthcheckPath: string;
}

/**
 * Collects every problem with a worker's own variables, so start-up names them all at once, as
 * `loadConfig` does for the common ones.
 */
export class EnvProblems {
  readonly #problems: string[] = [];

  add(variable: string, message: string): void {
    this.#problems.push(`${variable}: ${message}`);
  }

  /** Parses one variable with a zod schema; an empty string counts as unset. */
  read<T>(env: WorkerEnv, variable: string, schema: z.ZodType<T>, fallback: T): T {
    const raw = env[variable];
    if (raw === undefined || raw === '') return fallback;
    const parsed = schema.safeParse(raw);
    if (parsed.success) return parsed.data;
    this.add(variable, `${parsed.error.issues[0]?.message ?? 'invalid value'} (got "${raw}")`);
    return fallback;
  }

  /** Throws one `ConfigError` listing everything found so far. */
  throwIfAny(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }
}

/** A list variable: one entry per line, each trimmed; empty lines dropped (the reference's format). */
export function lines(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const entries = value
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return entries.length === 0 ? undefined : entries;
}

/** A positive whole number from an environment variable. */
export const positiveInteger = z.coerce
  .number({ message: 'must be a positive integer' })
  .int({ message: 'must be a positive integer' })
  .positive({ message: 'must be a positive integer' });

/**
 * A comma-separated list of routes, each one of `allowed` (`OPENAI_ROUTES`); duplicates dropped.
 * `served` names them in the message, e.g. "this worker serves".
 */
export function routeList<Route extends string>(allowed: readonly Route[], served: string) {
  return z.string().transform((value, ctx) => {
    const routes = value
      .split(',')
      .map((route) => route.trim())
      .filter((route) => route !== '');
    for (const route of routes) {
      if (!(allowed as readonly string[]).includes(route)) {
        ctx.addIssue({
          code: 'custom',
          message: `unknown route "${route}"; ${served} ${allowed.join(', ')}`,
        });
      }
    }
    return [...new Set(routes)] as Route[];
  });
}

const healthEndpoint = z
  .string()
  .refine((value) => value.startsWith('/') || /^https?:\/\/[^/]/i.test(value), {
    message: 'must be a path starting with "/" or an absolute http(s) URL',
  });

/**
 * Reads the reference's overrides (model-servers.md §2.1): `MODEL_NAME` (then the engine's own
 * variable), `MODEL_LOAD_LOG_MSG`, `MODEL_ERROR_LOG_MSGS`, `MODEL_INFO_LOG_MSGS` (one pattern per
 * line), `MODEL_HEALTH_ENDPOINT`. `MODEL_LOG` and `MODEL_SERVER_URL` are read by `loadConfig`;
 * the defaults here apply when they are unset.
 */
export function readEngineSettings(
  env: WorkerEnv,
  defaults: EngineDefaults,
  problems: EnvProblems,
): EngineSettings {
  let modelId: string | undefined;
  let modelIdSource: string | undefined;
  for (const variable of ['MODEL_NAME', ...(defaults.modelEnv ?? [])]) {
    const value = env[variable]?.trim();
    if (value) {
      modelId = value;
      modelIdSource = variable;
      break;
    }
  }
  const actions = defaults.logActions;
  return {
    modelId,
    modelIdSource,
    logActions: {
      onLoad: lines(env['MODEL_LOAD_LOG_MSG']) ?? actions.onLoad ?? [],
      onError: lines(env['MODEL_ERROR_LOG_MSGS']) ?? actions.onError ?? [],
      onInfo: lines(env['MODEL_INFO_LOG_MSGS']) ?? actions.onInfo ?? [],
    },
    modelLog: defaults.modelLog,
    modelServerUrl: defaults.modelServerUrl,
    modelHealthcheckPath: problems.read(
      env,
      'MODEL_HEALTH_ENDPOINT',
      healthEndpoint,
      defaults.healthPath ?? '/health',
    ),
  };
}

/** The model id the benchmark needs; its absence stops start-up naming the variables to set. */
export function requireModelId(
  settings: EngineSettings,
  defaults: EngineDefaults,
  problems: EnvProblems,
): string {
  if (settings.modelId !== undefined) return settings.modelId;
  const others = defaults.modelEnv?.length ? ` (or ${defaults.modelEnv.join(', ')})` : '';
  problems.add(
    'MODEL_NAME',
    `required${others}: the ${defaults.name} benchmark sends the model id the engine serves`,
  );
  return '';
}
