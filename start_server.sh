#!/usr/bin/env bash
# start_server.sh: launch tsworker on a Vast.ai instance, as PyWorker's start_server.sh does.
#
#   1. check BACKEND and MODEL_LOG (each missing one is named);
#   2. rotate the model log: append it to $MODEL_LOG.old and truncate it, so the worker never
#      re-reads a "model loaded" line from before this boot;
#   3. use `node` when it is Node >= 20.19; otherwise install the pinned official Node release
#      (below) under $NODE_DIR, after checking the tarball's SHA-256;
#   4. find tsworker (this checkout, $TSWORKER_DIR, or a clone of $TSWORKER_REPO), install its
#      runtime dependencies (npm ci --omit=dev) when node_modules is missing, build when asked, and
#      check that BACKEND names a worker (a typo gets the closest name and the list);
#   5. with USE_SSL=true, make a key and CSR and have Vast sign the certificate;
#   6. start `tsworker start "$BACKEND"` in the background, its output in $TSWORKER_LOG (rotated to
#      $TSWORKER_LOG.1 past TSWORKER_LOG_MAX_BYTES), its PID in $TSWORKER_PID_FILE.
#
# When a step fails, the script POSTs {id, mtoken, version, error_msg, url} to <addr>/worker_status/
# for every address in REPORT_ADDR, so a broken instance is never silent; so does a worker that
# later exits with a non-zero code, unless its own error beacon already reported why it could not
# start (that message stays the one the autoscaler shows). The script's own lines, and only those,
# go to its output and to $WORKSPACE_DIR/debug.log.
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
#   NODE_DIST_URL        where Node release tarballs are downloaded from (mirror)  [https://nodejs.org/dist]
#   NODE_DIST_VERSION    the Node release installed when node is missing or old    [the pinned one, below]
#   NODE_DIST_SHA256     that tarball's SHA-256; required with another version     [the pinned one for this machine]
#   NODE_DIR             where that Node is unpacked                               [$WORKSPACE_DIR/node]
#   TSWORKER_DIR         the tsworker checkout                                     [this script's directory if it
#                                                                                   is a checkout, else $WORKSPACE_DIR/tsworker]
#   TSWORKER_REPO        git URL cloned into TSWORKER_DIR when it does not exist   [unset]
#   TSWORKER_REF         branch, tag or commit checked out after cloning           [unset]
#   TSWORKER_BUILD       "true" compiles dist/ when it is missing (needs dev deps) [false]
#   TSWORKER_LOG         the worker's output                                       [$WORKSPACE_DIR/tsworker.log]
#   TSWORKER_LOG_MAX_BYTES  size past which TSWORKER_LOG moves to TSWORKER_LOG.1;
#                        0 never rotates                                           [67108864 (64 MiB)]
#   TSWORKER_PID_FILE    the worker's PID                                          [$WORKSPACE_DIR/tsworker.pid]
#   TSWORKER_VERSION     `version` in error reports                                [1.1.0]
# The worker itself reads CONTAINER_ID, PUBLIC_IPADDR, VAST_TCP_PORT_<WORKER_PORT>, MASTER_TOKEN,
# UNSECURED, MODEL_SERVER_URL and the rest of README's table from the same environment.

# No `set -e`: every failure goes through fail(), which reports it before exiting.
set -uo pipefail
# The terminal or pipe that started us may go away; the script's log tee and the watcher must not
# die of SIGPIPE when it does (ignored signals stay ignored in children).
trap '' PIPE
TEE="tee -a"
# GNU tee -p keeps writing the log file after its stdout breaks; BusyBox tee has no -p.
if tee -p -a /dev/null </dev/null >/dev/null 2>&1; then TEE="tee -p -a"; fi

# The Node release installed when the machine has no Node >= 20.19 (an LTS line), and the SHA-256 of
# its two Linux tarballs, as published in https://nodejs.org/dist/v22.22.2/SHASUMS256.txt.
NODE_PINNED_VERSION=22.22.2
NODE_PINNED_SHA256_X64=978978a635eef872fa68beae09f0aad0bbbae6757e444da80b570964a97e62a3
NODE_PINNED_SHA256_ARM64=b2f3a96f31486bfc365192ad65ced14833ad2a3c2e1bcefec4846902f264fa28

WORKSPACE_DIR="${WORKSPACE_DIR:-/workspace}"
REPORT_ADDR="${REPORT_ADDR:-https://run.vast.ai}"
WORKER_PORT="${WORKER_PORT:-3000}"
USE_SSL="${USE_SSL:-true}"
SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/instance.crt}"
SSL_KEY_FILE="${SSL_KEY_FILE:-/etc/instance.key}"
SSL_CERT_URL="${SSL_CERT_URL:-https://console.vast.ai/api/v0/sign_cert/?instance_id=${CONTAINER_ID:-}}"
NODE_DIST_URL="${NODE_DIST_URL:-https://nodejs.org/dist}"
NODE_DIST_VERSION="${NODE_DIST_VERSION:-$NODE_PINNED_VERSION}"
NODE_DIR="${NODE_DIR:-$WORKSPACE_DIR/node}"
TSWORKER_LOG="${TSWORKER_LOG:-$WORKSPACE_DIR/tsworker.log}"
TSWORKER_LOG_MAX_BYTES="${TSWORKER_LOG_MAX_BYTES:-67108864}"
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

download() { # url file
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 20 -t 3 -O "$2" "$1"
  else
    echo "start_server.sh: neither curl nor wget is installed" >&2
    return 1
  fi
}

sha256_of() { # file
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
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

# Exit status 0 when the node binary $1 runs and is Node >= 20.19.
node_is_recent() {
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    >/dev/null 2>&1
}

# Downloads the Node release NODE_DIST_VERSION for this machine from NODE_DIST_URL, checks its
# SHA-256 and unpacks it into NODE_DIR. Every failure is reported.
install_node() {
  local arch sha
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 sha=$NODE_PINNED_SHA256_X64 ;;
    aarch64 | arm64) arch=arm64 sha=$NODE_PINNED_SHA256_ARM64 ;;
    *) fail "node is missing or older than 20.19, and no Node release is pinned for this $(uname -m) machine: install Node >= 20.19 in the image" ;;
  esac
  if [ -n "${NODE_DIST_SHA256:-}" ]; then
    sha=$NODE_DIST_SHA256
  elif [ "$NODE_DIST_VERSION" != "$NODE_PINNED_VERSION" ]; then
    fail "NODE_DIST_VERSION=$NODE_DIST_VERSION needs NODE_DIST_SHA256 (the checksums pinned here are those of $NODE_PINNED_VERSION)"
  fi
  local name="node-v$NODE_DIST_VERSION-linux-$arch"
  local url="${NODE_DIST_URL%/}/v$NODE_DIST_VERSION/$name.tar.gz"
  local tmp
  tmp=$(mktemp -d "$WORKSPACE_DIR/.node-install.XXXXXX") || fail "cannot create a directory in $WORKSPACE_DIR to install Node"
  echo "installing Node $NODE_DIST_VERSION from $url into $NODE_DIR"
  if ! download "$url" "$tmp/$name.tar.gz"; then
    rm -rf "$tmp"
    fail "node is missing or older than 20.19, and downloading $url failed (NODE_DIST_URL sets a mirror)"
  fi
  local actual
  actual=$(sha256_of "$tmp/$name.tar.gz")
  if [ "$actual" != "$sha" ]; then
    rm -rf "$tmp"
    fail "the Node tarball $url has SHA-256 $actual, not the pinned $sha: not installed"
  fi
  mkdir "$tmp/node" && tar -xzf "$tmp/$name.tar.gz" -C "$tmp/node" --strip-components=1 &&
    node_is_recent "$tmp/node/bin/node"
  local unpacked=$?
  if [ "$unpacked" -ne 0 ]; then
    rm -rf "$tmp"
    fail "the Node tarball $url did not unpack to a working Node >= 20.19 (bin/node)"
  fi
  rm -rf "$NODE_DIR" && mkdir -p "$(dirname "$NODE_DIR")" && mv "$tmp/node" "$NODE_DIR"
  local moved=$?
  rm -rf "$tmp"
  [ "$moved" -eq 0 ] || fail "cannot move the unpacked Node to $NODE_DIR"
}

# Names compared without case, "_" and "-", as tsworker's own "did you mean" compares them.
normalize_name() {
  local s=${1,,}
  s=${s//_/}
  s=${s//-/}
  printf '%s' "$s"
}

# Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
edit_distance() {
  local a=$1 b=$2 i j cost best other
  local la=${#a} lb=${#b} cols=$((${#b} + 1))
  local -a d
  for ((i = 0; i <= la; i++)); do d[i * cols]=$i; done
  for ((j = 0; j <= lb; j++)); do d[j]=$j; done
  for ((i = 1; i <= la; i++)); do
    for ((j = 1; j <= lb; j++)); do
      cost=1
      [ "${a:i-1:1}" = "${b:j-1:1}" ] && cost=0
      best=$((d[(i - 1) * cols + j] + 1))
      other=$((d[i * cols + j - 1] + 1))
      ((other < best)) && best=$other
      other=$((d[(i - 1) * cols + j - 1] + cost))
      ((other < best)) && best=$other
      if ((i > 1 && j > 1)) && [ "${a:i-1:1}" = "${b:j-2:1}" ] && [ "${a:i-2:1}" = "${b:j-1:1}" ]; then
        other=$((d[(i - 2) * cols + j - 2] + 1))
        ((other < best)) && best=$other
      fi
      d[i * cols + j]=$best
    done
  done
  printf '%s' "${d[la * cols + lb]}"
}

# The name among $2... that $1 most likely stands for, or nothing: the nearest by edit distance,
# allowing one edit per three characters (at least one, at most three); else one that contains it
# or that it contains, with half its characters or more (hello -> hello_world).
closest_name() {
  local wanted candidate norm distance allowed shorter longer
  wanted=$(normalize_name "$1")
  shift
  local best="" best_distance=999 partial=""
  for candidate in "$@"; do
    norm=$(normalize_name "$candidate")
    distance=$(edit_distance "$wanted" "$norm")
    allowed=$((${#candidate} / 3))
    ((allowed < 1)) && allowed=1
    ((allowed > 3)) && allowed=3
    # On a tie, the name that starts like the typo wins (olama -> ollama, not llama).
    if ((distance <= allowed)) && { ((distance < best_distance)) ||
      { ((distance == best_distance)) && [ "${norm:0:1}" = "${wanted:0:1}" ]; }; }; then
      best=$candidate
      best_distance=$distance
    fi
    shorter=$wanted longer=$norm
    ((${#norm} < ${#wanted})) && shorter=$norm longer=$wanted
    if [ -z "$partial" ] && ((${#shorter} >= 4 && 2 * ${#shorter} >= ${#longer})) &&
      [[ "$longer" == *"$shorter"* ]]; then
      partial=$candidate
    fi
  done
  printf '%s' "${best:-$partial}"
}

# Copies the worker's output (stdin) to TSWORKER_LOG, moving it to TSWORKER_LOG.1 before it would
# pass TSWORKER_LOG_MAX_BYTES, at a line boundary. It creates the marker file once the worker's
# error beacon has logged a report, so the watcher knows not to post over it. It never stops before
# the worker does: signals are the worker's business, and a failed write drops that output only.
# shellcheck disable=SC2016
LOG_WRITER='
const fs = require("node:fs");
const [file, maxText, marker] = process.argv.slice(1);
const max = Number(maxText) > 0 ? Number(maxText) : Infinity;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => {});
let fd = -1;
let size = 0;
const open = () => {
  fd = fs.openSync(file, "a");
  size = fs.fstatSync(fd).size;
};
const write = (bytes) => {
  try {
    if (fd < 0) open();
    if (size > 0 && size + bytes.length > max) {
      fs.closeSync(fd);
      fd = -1;
      fs.renameSync(file, `${file}.1`);
      open();
    }
    for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at);
    size += bytes.length;
  } catch (error) {
    process.stderr.write(`start_server.sh: cannot write ${file}: ${error.message}\n`);
    fd = -1;
  }
};
let beacon = false;
let partial = Buffer.alloc(0);
process.stdin.on("data", (chunk) => {
  if (!beacon && chunk.includes("\"component\":\"beacon\"")) {
    beacon = true;
    try { fs.writeFileSync(marker, ""); } catch {}
  }
  let data = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
  let start = 0;
  for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, start)) {
    write(data.subarray(start, nl + 1));
    start = nl + 1;
  }
  partial = data.subarray(start);
  // A line longer than the limit is written as it comes rather than held in memory.
  if (partial.length >= Math.min(max, 1 << 20)) {
    write(partial);
    partial = Buffer.alloc(0);
  }
});
process.stdin.on("end", () => {
  if (partial.length > 0) write(partial);
});
'

# Where this script is, before the cd below: `./start_server.sh` run from a checkout uses that checkout.
script_dir=""
if [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fi

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
[[ "$TSWORKER_LOG_MAX_BYTES" =~ ^[0-9]+$ ]] ||
  fail "TSWORKER_LOG_MAX_BYTES=$TSWORKER_LOG_MAX_BYTES is not a number of bytes"

echo "start_server.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "  BACKEND=$BACKEND MODEL_LOG=$MODEL_LOG WORKSPACE_DIR=$WORKSPACE_DIR"
echo "  REPORT_ADDR=$REPORT_ADDR WORKER_PORT=$WORKER_PORT USE_SSL=$USE_SSL"
echo "  CONTAINER_ID=${CONTAINER_ID:-} PUBLIC_IPADDR=${PUBLIC_IPADDR:-} MASTER_TOKEN=$([ -n "${MASTER_TOKEN:-}" ] && echo set || echo unset)"

# 2. Rotate the model log first, before anything slow, so no line the model writes now is lost.
if [ -e "$MODEL_LOG" ]; then
  { cat "$MODEL_LOG" >>"$MODEL_LOG.old" && : >"$MODEL_LOG"; } ||
    fail "cannot rotate MODEL_LOG $MODEL_LOG into $MODEL_LOG.old"
fi

# 3. Node: the machine's when it is recent enough, else the pinned release (kept across boots).
if command -v node >/dev/null 2>&1 && node_is_recent node; then
  :
elif [ -x "$NODE_DIR/bin/node" ] && [ "$("$NODE_DIR/bin/node" --version 2>/dev/null)" = "v$NODE_DIST_VERSION" ] &&
  node_is_recent "$NODE_DIR/bin/node"; then
  PATH="$NODE_DIR/bin:$PATH"
else
  if command -v node >/dev/null 2>&1; then
    echo "node $(node --version 2>/dev/null) is older than 20.19"
  else
    echo "node is not installed"
  fi
  install_node
  PATH="$NODE_DIR/bin:$PATH"
fi
export PATH
echo "using node $(node --version) at $(command -v node)"

# 4. tsworker itself.
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
  workers=()
  for folder in "$TSWORKER_DIR"/workers/*/; do
    [ -f "$folder/server.ts" ] || [ -f "$folder/server.js" ] || continue
    folder=${folder%/}
    workers+=("${folder##*/}")
  done
  hint=""
  if [[ "$BACKEND" != */* ]] && [ ${#workers[@]} -gt 0 ]; then
    closest=$(closest_name "$BACKEND" "${workers[@]}")
    [ -n "$closest" ] && hint=" Did you mean \"$closest\"?"
  fi
  available=$(printf '%s, ' "${workers[@]}")
  fail "BACKEND=$BACKEND: no such worker (expected $TSWORKER_DIR/workers/$BACKEND or a path).$hint Available workers: ${available%, }"
fi

# 5. The TLS certificate, signed by Vast as the Python launcher has it signed.
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

# 6. Launch in the background. The worker's output goes to TSWORKER_LOG only (bounded), never to
# debug.log. A watcher reports a non-zero exit (a drain on SIGTERM exits 0), except after the
# worker's error beacon has reported its start-up failure: that message stays.
rm -f "$TSWORKER_PID_FILE"
beacon_marker="$TSWORKER_PID_FILE.beacon"
rm -f "$beacon_marker"
(
  {
    node "$TSWORKER_DIR/bin/tsworker.js" start "$BACKEND" </dev/null 2>&1 &
    echo "$!" >"$TSWORKER_PID_FILE"
    wait "$!"
  } | node -e "$LOG_WRITER" "$TSWORKER_LOG" "$TSWORKER_LOG_MAX_BYTES" "$beacon_marker"
  code=${PIPESTATUS[0]}
  echo "start_server.sh: tsworker exited with code $code"
  if [ "$code" -ne 0 ]; then
    if [ -e "$beacon_marker" ]; then
      echo "start_server.sh: its error beacon reported why it could not start; that report stands"
    else
      report_error "tsworker exited with code $code (see $TSWORKER_LOG)"
    fi
  fi
  rm -f "$beacon_marker"
) &
disown
for _ in $(seq 100); do
  [ -s "$TSWORKER_PID_FILE" ] && break
  sleep 0.05
done
[ -s "$TSWORKER_PID_FILE" ] || fail "tsworker did not start"
echo "launching tsworker done: pid $(cat "$TSWORKER_PID_FILE"), log $TSWORKER_LOG"
