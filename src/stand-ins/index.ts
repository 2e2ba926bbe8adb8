export {
  ExampleModelServer,
  startExampleModelServer,
  main as runExampleModelServer,
} from './example-model-server.ts';
export type {
  ExampleModelServerEvents,
  ExampleModelServerOptions,
  ExampleModelServerSettings,
  ExampleModelServerStats,
  FailureInjection,
  HoldPoint,
} from './example-model-server.ts';
export {
  LocalAutoscaler,
  startLocalAutoscaler,
  main as runLocalAutoscaler,
} from './local-autoscaler.ts';
export type {
  AuthMode,
  DeleteRequestEntry,
  DeleteRequestsBody,
  LocalAutoscalerEvents,
  LocalAutoscalerFailures,
  LocalAutoscalerOptions,
  LocalAutoscalerRecords,
  ReportRecord,
  RouteNotReady,
  RouteReady,
  RouteRecord,
  RouteRequest,
  RouteResponse,
  WorkerStatusBody,
} from './local-autoscaler.ts';
