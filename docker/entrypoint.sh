#!/usr/bin/env bash
# docker/entrypoint.sh: the ENTRYPOINT of docker/Dockerfile. It runs tsworker as the container's
# main process, so that `docker stop` (SIGTERM) drains the worker.
#
#   entrypoint.sh                    a sidecar: the model server runs in another container, which
#                                    shares MODEL_LOG (a volume) and is reached at MODEL_SERVER_URL;
#   entrypoint.sh <model command>    tsworker added on top of a model-server image: the arguments
#                                    (the image's CMD) start the model server in the background, its
#                                    output appended to MODEL_LOG (rotated first, as start_server.sh
#                                    does) and shown in the container's output.
#
# Then it `exec`s node: the worker takes this process's PID (PID 1 in a container), so SIGTERM
# reaches it, drains it (up to TERMINATION_GRACE_PERIOD_SECONDS, 300: give `docker stop -t` or
# Kubernetes' terminationGracePeriodSeconds as much) and it exits 0. Run the container with
# `--init` (tini) when the model server runs inside it, so that exited processes are reaped.
#
# Variables: BACKEND (required), MODEL_LOG (required with a model command), WORKSPACE_DIR (the
# worker's working directory, where .has_benchmark lands; /workspace, created), TSWORKER_DIR (the
# checkout holding this script), and README's environment variables for the worker itself. TLS
# certificates are not requested here: on Vast, run start_server.sh as the on-start script instead
# (docs/deploying-on-vast.md); elsewhere mount SSL_CERT_FILE and SSL_KEY_FILE, or leave USE_SSL unset.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TSWORKER_DIR="${TSWORKER_DIR:-$(dirname "$here")}"
WORKSPACE_DIR="${WORKSPACE_DIR:-/workspace}"

fail() {
  echo "entrypoint.sh: $1" >&2
  exit 1
}

[ -n "${BACKEND:-}" ] || fail "BACKEND is not set (the worker to run, e.g. vllm)"
command -v node >/dev/null 2>&1 || fail "node is not installed (tsworker needs Node >= 20.19)"
[ -f "$TSWORKER_DIR/bin/tsworker.js" ] || fail "no tsworker at $TSWORKER_DIR (set TSWORKER_DIR)"

if [ $# -gt 0 ]; then
  [ -n "${MODEL_LOG:-}" ] ||
    fail "MODEL_LOG is not set: the model server's output goes there, and the worker watches it"
  mkdir -p "$(dirname "$MODEL_LOG")"
  # The worker must never read a "model loaded" line from a previous run of the container.
  if [ -e "$MODEL_LOG" ]; then
    cat "$MODEL_LOG" >>"$MODEL_LOG.old"
    : >"$MODEL_LOG"
  fi
  "$@" </dev/null > >(tee -a "$MODEL_LOG") 2>&1 &
  echo "entrypoint.sh: model server started, pid $!: $*"
fi

mkdir -p "$WORKSPACE_DIR"
cd "$WORKSPACE_DIR"
exec node "$TSWORKER_DIR/bin/tsworker.js" start "$BACKEND"
