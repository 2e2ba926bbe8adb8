#!/usr/bin/env bash
# start_server.sh: launch tsworker on a Vast.ai instance, as PyWorker's start_server.sh does.
#
#   1. check BACKEND and MODEL_LOG (each missing one is named);
#   2. rotate the model log: append it to $MODEL_LOG.old and truncate it, so the worker never
#      re-reads a "model loaded" line from before this boot;
#   3. find tsworker (this checkout, $TSWORKER_DIR, or a clone of $TSWORKER_REPO), install its
#      runtime dependencies (npm ci --omit=dev) when node_modules is missing, build when asked;
#   4. with USE_SSL=true, make a key and CSR and have Vast sign the certificate;
#   5. start `tsworker start "$BACKEND"` in the background, its output teed to $TSWORKER_LOG, its
#      PID in $TSWORKER_PID_FILE.
#
# When a step fails, the script POSTs {id, mtoken, version, error_msg, url} to <addr>/worker_status/
# for every address in REPORT_ADDR, so a broken instance is never silent; so does a worker that
# later exits with a non-zero code.
#
# Variables (defaults in brackets):
#   BACKEND              worker folder under workers/ (hello_world) or a path      [required]
#   MODEL_LOG            the model server's log file                               [required]
#   WORKSPACE_DIR        where logs and the PID file go, and the worker's cwd      [/workspace]
#   REPORT_ADDR          autoscaler URLs, comma-separated                          [https://run.vast.ai]
#   WORKER_PORT          main listener                                             [3000]
#   USE_SSL              "true" requests a certificate and serves HTTPS            [true]
#   SSL_CERT_FILE        where the signed certificate goes                         [/etc/instance.crt]
#   SSL_KEY_FILE         where the generated key goes                              [/etc/instance.key]
#   SSL_CERT_URL         the signing service                                       [https://console.vast.ai/api/v0/sign_cert/?instance_id=$CONTAINER_ID]
#   TSWORKER_DIR         the tsworker checkout                                     [this script's directory if it
#                                                                                   is a checkout, else $WORKSPACE_DIR/tsworker]
#   TSWORKER_REPO        git URL cloned into TSWORKER_DIR when it does not exist   [unset]
#   TSWORKER_REF         branch, tag or commit checked out after cloning           [unset]
#   TSWORKER_BUILD       "true" compiles dist/ when it is missing (needs dev deps) [false]
#   TSWORKER_LOG         the worker's output                                       [$WORKSPACE_DIR/tsworker.log]
#   TSWORKER_PID_FILE    the worker's PID                                          [$WORKSPACE_DIR/tsworker.pid]
#   TSWORKER_VERSION     `version` in error reports                                [1.1.0]
# The worker itself reads CONTAINER_ID, PUBLIC_IPADDR, VAST_TCP_PORT_<WORKER_PORT>, MASTER_TOKEN,
# UNSECURED, MODEL_SERVER_URL and the rest of README's table from the same environment.

# No `set -e`: every failure goes through fail(), which reports it before exiting.
set -uo pipefail
# The terminal or pipe that started us may go away; the worker, its log tee and the watcher must not
# die of SIGPIPE when it does (ignored signals stay ignored in children).
trap '' PIPE
TEE="tee -a"
# GNU tee -p keeps writing the log file after its stdout breaks; BusyBox tee has no -p.
if tee -p -a /dev/null </dev/null >/dev/null 2>&1; then TEE="tee -p -a"; fi

WORKSPACE_DIR="${WORKSPACE_DIR:-/workspace}"
REPORT_ADDR="${REPORT_ADDR:-https://run.vast.ai}"
WORKER_PORT="${WORKER_PORT:-3000}"
USE_SSL="${USE_SSL:-true}"
SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/instance.crt}"
SSL_KEY_FILE="${SSL_KEY_FILE:-/etc/instance.key}"
SSL_CERT_URL="${SSL_CERT_URL:-https://console.vast.ai/api/v0/sign_cert/?instance_id=${CONTAINER_ID:-}}"
TSWORKER_LOG="${TSWORKER_LOG:-$WORKSPACE_DIR/tsworker.log}"
TSWORKER_PID_FILE="${TSWORKER_PID_FILE:-$WORKSPACE_DIR/tsworker.pid}"
TSWORKER_VERSION="${TSWORKER_VERSION:-1.1.0}"
DEBUG_LOG="$WORKSPACE_DIR/debug.log"
export REPORT_ADDR WORKER_PORT USE_SSL SSL_CERT_FILE SSL_KEY_FILE

json_escape() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '%s' "$s"
}

trim() {
  local s=$1
  s="${s#"${s%%[![:space:]]*}"}"
  s="${s%"${s##*[![:space:]]}"}"
  printf '%s' "$s"
}

post_json() { # url body
  if command -v curl >/dev/null 2>&1; then
    curl -sS --fail -m 10 -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O /dev/null --header='Content-Type: application/json' --post-data="$2" "$1"
  else
    echo "start_server.sh: neither curl nor wget is installed; cannot report" >&2
    return 1
  fi
}

# The minimal /worker_status/ of the Python launcher: {id, mtoken, version, error_msg, url}.
report_error() {
  local message=$1 id=null mtoken=null scheme=http
  [[ "${CONTAINER_ID:-}" =~ ^[0-9]+$ ]] && id=$CONTAINER_ID
  [ -n "${MASTER_TOKEN:-}" ] && mtoken="\"$(json_escape "$MASTER_TOKEN")\""
  [ "$USE_SSL" = "true" ] && scheme=https
  local port_var="VAST_TCP_PORT_${WORKER_PORT}"
  local url="${scheme}://${PUBLIC_IPADDR:-}:${!port_var:-$WORKER_PORT}"
  local body
  body="{\"id\":$id,\"mtoken\":$mtoken,\"version\":\"$(json_escape "$TSWORKER_VERSION")\","
  body+="\"error_msg\":\"$(json_escape "$message")\",\"url\":\"$(json_escape "$url")\"}"
  local addr
  IFS=',' read -ra addrs <<<"$REPORT_ADDR"
  for addr in "${addrs[@]}"; do
    addr=$(trim "$addr")
    while [[ "$addr" == */ ]]; do addr=${addr%/}; done
    [ -z "$addr" ] && continue
    if post_json "$addr/worker_status/" "$body"; then
      echo "start_server.sh: reported the error to $addr"
    else
      echo "start_server.sh: could not report the error to $addr" >&2
    fi
  done
}

fail() {
  echo "start_server.sh: $1" >&2
  report_error "start_server.sh: $1"
  exit 1
}

mkdir -p "$WORKSPACE_DIR" || fail "cannot create WORKSPACE_DIR $WORKSPACE_DIR"
cd "$WORKSPACE_DIR" || fail "cannot enter WORKSPACE_DIR $WORKSPACE_DIR"
exec > >($TEE "$DEBUG_LOG") 2>&1

# 1. Required variables, each missing one named in one report.
missing=()
[ -z "${BACKEND:-}" ] && missing+=("BACKEND is not set (the worker to run, e.g. hello_world)")
[ -z "${MODEL_LOG:-}" ] && missing+=("MODEL_LOG is not set (the model server's log file)")
if [ ${#missing[@]} -gt 0 ]; then
  joined=$(printf '%s; ' "${missing[@]}")
  fail "${joined%; }"
fi
export BACKEND MODEL_LOG

echo "start_server.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "  BACKEND=$BACKEND MODEL_LOG=$MODEL_LOG WORKSPACE_DIR=$WORKSPACE_DIR"
echo "  REPORT_ADDR=$REPORT_ADDR WORKER_PORT=$WORKER_PORT USE_SSL=$USE_SSL"
echo "  CONTAINER_ID=${CONTAINER_ID:-} PUBLIC_IPADDR=${PUBLIC_IPADDR:-} MASTER_TOKEN=$([ -n "${MASTER_TOKEN:-}" ] && echo set || echo unset)"

# 2. Rotate the model log first, before anything slow, so no line the model writes now is lost.
if [ -e "$MODEL_LOG" ]; then
  { cat "$MODEL_LOG" >>"$MODEL_LOG.old" && : >"$MODEL_LOG"; } ||
    fail "cannot rotate MODEL_LOG $MODEL_LOG into $MODEL_LOG.old"
fi

# 3. tsworker itself.
command -v node >/dev/null 2>&1 || fail "node is not installed (tsworker needs Node >= 20.19)"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
  fail "node $(node --version) is too old (tsworker needs Node >= 20.19)"

script_dir=""
if [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fi
if [ -z "${TSWORKER_DIR:-}" ]; then
  if [ -n "$script_dir" ] && grep -q '"name": *"tsworker"' "$script_dir/package.json" 2>/dev/null; then
    TSWORKER_DIR=$script_dir
  else
    TSWORKER_DIR="$WORKSPACE_DIR/tsworker"
  fi
fi
if [ ! -f "$TSWORKER_DIR/package.json" ]; then
  [ -n "${TSWORKER_REPO:-}" ] ||
    fail "no tsworker checkout at $TSWORKER_DIR (set TSWORKER_DIR, or TSWORKER_REPO to clone one)"
  echo "cloning $TSWORKER_REPO into $TSWORKER_DIR"
  git clone "$TSWORKER_REPO" "$TSWORKER_DIR" || fail "git clone $TSWORKER_REPO failed"
  if [ -n "${TSWORKER_REF:-}" ]; then
    git -C "$TSWORKER_DIR" checkout "$TSWORKER_REF" || fail "git checkout $TSWORKER_REF failed"
  fi
fi
if [ "${TSWORKER_BUILD:-false}" = "true" ] && [ ! -f "$TSWORKER_DIR/dist/src/cli.js" ]; then
  echo "building tsworker in $TSWORKER_DIR"
  (cd "$TSWORKER_DIR" && npm ci --no-audit --no-fund && npm run build && npm prune --omit=dev) ||
    fail "building tsworker failed (npm ci, npm run build)"
elif [ ! -d "$TSWORKER_DIR/node_modules" ]; then
  # tsx is a runtime dependency: without dist/, the sources run as they are.
  echo "installing tsworker's dependencies in $TSWORKER_DIR"
  (cd "$TSWORKER_DIR" && npm ci --omit=dev --no-audit --no-fund) || fail "npm ci --omit=dev failed in $TSWORKER_DIR"
fi
if [ ! -e "$BACKEND" ] && [ ! -d "$TSWORKER_DIR/workers/$BACKEND" ]; then
  fail "BACKEND=$BACKEND: no such worker (expected $TSWORKER_DIR/workers/$BACKEND or a path)"
fi

# 4. The TLS certificate, signed by Vast as the Python launcher has it signed.
if [ "$USE_SSL" = "true" ]; then
  command -v openssl >/dev/null 2>&1 || fail "USE_SSL=true but openssl is not installed"
  command -v curl >/dev/null 2>&1 || fail "USE_SSL=true but curl is not installed"
  mkdir -p "$(dirname "$SSL_CERT_FILE")" "$(dirname "$SSL_KEY_FILE")" ||
    fail "cannot create the directories of $SSL_CERT_FILE and $SSL_KEY_FILE"
  tls_tmp=$(mktemp -d) || fail "mktemp failed"
  cat >"$tls_tmp/san.cnf" <<'EOF'
[req]
default_bits = 2048
distinguished_name = req_distinguished_name
req_extensions = v3_req

[req_distinguished_name]
countryName = US
stateOrProvinceName = CA
organizationName = Vast.ai Inc.
commonName = vast.ai

[v3_req]
basicConstraints = CA:FALSE
keyUsage = nonRepudiation, digitalSignature, keyEncipherment
subjectAltName = @alt_names

[alt_names]
IP.1 = 0.0.0.0
EOF
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/C=US/ST=CA/CN=pyworker.vast.ai/" \
    -keyout "$SSL_KEY_FILE" -out "$tls_tmp/instance.csr" -config "$tls_tmp/san.cnf" >/dev/null 2>&1 ||
    fail "cannot generate the TLS key $SSL_KEY_FILE and its CSR"
  # Unlike the original, an error answer never becomes the certificate: the status and the PEM are checked.
  curl -sS --fail -m 60 -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary "@$tls_tmp/instance.csr" -o "$tls_tmp/instance.crt" "$SSL_CERT_URL" ||
    fail "Failed to get SSL Certificate: the request to $SSL_CERT_URL failed"
  grep -q 'BEGIN CERTIFICATE' "$tls_tmp/instance.crt" ||
    fail "Failed to get SSL Certificate: $SSL_CERT_URL did not answer with a PEM certificate"
  mv "$tls_tmp/instance.crt" "$SSL_CERT_FILE" || fail "cannot write $SSL_CERT_FILE"
  rm -rf "$tls_tmp"
  echo "TLS certificate written to $SSL_CERT_FILE"
fi

# 5. Launch in the background; a watcher reports a non-zero exit (a drain on SIGTERM exits 0).
rm -f "$TSWORKER_PID_FILE"
(
  node "$TSWORKER_DIR/bin/tsworker.js" start "$BACKEND" > >($TEE "$TSWORKER_LOG") 2>&1 &
  pid=$!
  echo "$pid" >"$TSWORKER_PID_FILE"
  wait "$pid"
  code=$?
  if [ "$code" -ne 0 ]; then
    report_error "tsworker exited with code $code (see $TSWORKER_LOG)"
  fi
) &
disown
for _ in $(seq 100); do
  [ -s "$TSWORKER_PID_FILE" ] && break
  sleep 0.05
done
[ -s "$TSWORKER_PID_FILE" ] || fail "tsworker did not start"
echo "launching tsworker done: pid $(cat "$TSWORKER_PID_FILE"), log $TSWORKER_LOG"
