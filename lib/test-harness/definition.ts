/**
 * What a worker's test_load.ts declares: for each route, how to make a payload (PyWorker's
 * `for_test()`), what it costs, how to check an answer and how to count its tokens.
 */
import { DefinitionError } from '../errors.ts';
import type { CountTokens, Verify } from './load-types.ts';

export interface LoadTestRoute<P> {
  /** One request's payload; `index` counts requests from 0. */
  readonly payload: (index: number) => P;
  /** The `cost` sent to /route/ (PyWorker: `payload.count_workload()`). @default 100 */
  readonly cost?: (payload: P) => number;
  /** `--verify`: returns what is wrong with a 2xx answer, or nothing when it is right. */
  readonly verify?: Verify<P>;
  /** Tokens in a stream event or a JSON body. @default one per stream event */
  readonly tokens?: CountTokens;
}

export interface LoadTestOptions<P> {
  /** The worker's name, shown in the live view and the summary. */
  readonly name: string;
  readonly routes: Readonly<Record<string, LoadTestRoute<P>>>;
  /** @default the first route */
  readonly defaultRoute?: string;
}

/** A validated load test; payloads are typed where it is defined and opaque afterwards. */
export interface LoadTestDefinition {
  readonly kind: 'load-test';
  readonly name: string;
  readonly routes: Readonly<Record<string, LoadTestRoute<unknown>>>;
  readonly defaultRoute: string;
}

export function defineLoadTest<P>(options: LoadTestOptions<P>): LoadTestDefinition {
  const routes = Object.keys(options.routes);
  const where = `load test ${JSON.stringify(options.name)}`;
  if (routes.length === 0)
    throw new DefinitionError(`${where}: routes must name at least one route`);
  for (const route of routes) {
    if (!route.startsWith('/'))
      throw new DefinitionError(`${where}: route ${JSON.stringify(route)} must start with "/"`);
    if (typeof options.routes[route]?.payload !== 'function') {
      throw new DefinitionError(`${where}: route ${route} needs a payload function`);
    }
  }
  const defaultRoute = options.defaultRoute ?? (routes[0] as string);
  if (!routes.includes(defaultRoute)) {
    throw new DefinitionError(
      `${where}: defaultRoute ${defaultRoute} is not one of ${routes.join(', ')}`,
    );
  }
  return Object.freeze({
    kind: 'load-test',
    name: options.name,
    // Each route's functions only ever receive the payloads its own `payload` made.
    routes: options.routes as unknown as Readonly<Record<string, LoadTestRoute<unknown>>>,
    defaultRoute,
  });
}

export function isLoadTestDefinition(value: unknown): value is LoadTestDefinition {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'load-test'
  );
}
