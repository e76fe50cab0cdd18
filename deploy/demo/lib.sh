# Shared by deploy/demo/rehearse and deploy/demo/time-fix: the transcript
# helpers, the run-book blocks, a database for the demo, starting and stopping
# vote-api, and the temporary copy where the fix is applied and built.
# Source it after scripts/lib/stack.sh; do not run it.
# shellcheck disable=SC2034 # FRAME, STARTUP, OUT, BLOCK, PROMTOOL are results for the caller

DEMO_DIR="$ROOT/target/demo"
MAIN_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PATCH_FILE="deploy/demo/the-fix.patch"
T0="$EPOCHREALTIME"

# ---- transcript ---------------------------------------------------------------
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  C_B=$'\033[1m' C_G=$'\033[32m' C_R=$'\033[31m' C_Y=$'\033[33m' C_D=$'\033[2m' C_0=$'\033[0m'
else
  C_B='' C_G='' C_R='' C_Y='' C_D='' C_0=''
fi
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%6.1fs", b - a }'; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
phase() { printf '\n%s━━ %s ━━%s\n' "$C_B" "$*" "$C_0"; }
say() { printf '%s %s\n' "$(elapsed)" "$*"; }
ok() { printf '%s %s✓%s %s\n' "$(elapsed)" "$C_G" "$C_0" "$*"; }
note() { printf '%s %s!%s %s\n' "$(elapsed)" "$C_Y" "$C_0" "$*"; }
fail() {
  printf '%s %s✗ %s%s\n' "$(elapsed)" "$C_R" "$*" "$C_0"
  [ -n "${APP_LOG:-}" ] && [ -f "$APP_LOG" ] && { printf '%s--- last lines of %s ---%s\n' "$C_D" "$APP_LOG" "$C_0"; tail -n 15 "$APP_LOG"; }
  exit 1
}
# Shows command output indented under the command.
indent() { sed "s/^/        ${C_D}│${C_0} /"; }
show_cmd() { sed "1s/^/      \$ /; 2,\$s/^/        /"; }

# ---- the run-book's commands ------------------------------------------------------
# The run-book in docs/demo.md marks each
# command the speaker types with a line `# rehearse: NAME` inside its code
# block. block NAME loads the lines after the marker up to the end of the block
# into $BLOCK, so rehearse runs exactly what the speaker will type.
block() {
  local name="$1"
  # The block may sit in a list item: its lines lose the marker's indentation.
  BLOCK="$(awk -v m="# rehearse: $name" '
    !on && index($0, m) && $0 ~ "^ *" m "$" { on = 1; pad = index($0, m) - 1; next }
    on && /^ *```/ { exit }
    on { print substr($0, pad + 1) }' "$ROOT/docs/demo.md")"
  [ -n "$BLOCK" ] || fail "no run-book block '# rehearse: $name' in docs/demo.md"
}

# run_block NAME: shows the block and runs it in bash (VOTE_URL, ADMIN_TOKEN
# exported); its output goes to $OUT and is shown indented.
run_block() {
  block "$1"
  printf '%s\n' "$BLOCK" | show_cmd
  OUT="$(bash -c "set -o pipefail; $BLOCK" 2>&1)" || fail "the run-book block '$1' failed: $OUT"
  printf '%s\n' "$OUT" | indent
}

# ---- HTTP helpers ---------------------------------------------------------------
# get PATH: body of a GET that must answer 200.
get() { curl -fsS --max-time 10 "$VOTE_URL$1" || fail "GET $1 did not answer 200"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$VOTE_URL$1"; }
# Prometheus scrapes the pod, never the ingress; /metrics refuses proxied peers.
metric() {
  curl -fsS --max-time 10 "$METRICS_URL/metrics" | awk -v n="$1" '$1 == n { print $2 }' \
    || fail "GET $METRICS_URL/metrics did not answer 200"
}
counts() { get /votes | jq -c 'with_entries(.value |= .count)'; }
total_of() { jq '[.[] | if type == "object" then .count else . end] | add'; }

# The last `event: votes` frame of an SSE transcript, as {"print":N,...}.
last_frame() {
  awk '/^event: votes/ { v = 1; next } /^data: / { if (v) last = substr($0, 7); v = 0 } END { print last }' "$1" \
    | jq -c 'with_entries(.value |= .count)' 2>/dev/null
}
# wait_frame FILE TOTAL: until the stream shows TOTAL votes (5 s at most).
wait_frame() {
  local file="$1" want="$2" frame=""
  for _ in $(seq 1 50); do
    frame="$(last_frame "$file")"
    [ -n "$frame" ] && [ "$(total_of <<<"$frame")" = "$want" ] && { FRAME="$frame"; return 0; }
    sleep 0.1
  done
  fail "/stream did not show $want votes within 5 s (last frame: ${frame:-none})"
}
# watch_stream NAME: a /stream client in the background, its frames in $DEMO_RUN/NAME.sse.
# The file is created here, not by the background job's redirection: the job
# may not have run yet when wait_frame first reads it.
watch_stream() {
  STREAM_FILE="$DEMO_RUN/$1.sse"
  : >"$STREAM_FILE"
  curl -sN --max-time 600 "$VOTE_URL/stream" >>"$STREAM_FILE" 2>/dev/null &
  STREAM_PIDS+=("$!")
}
STREAM_PIDS=()
stop_streams() {
  local pid
  for pid in "${STREAM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  STREAM_PIDS=()
}

# ---- PostgreSQL and Redis for the demo -----------------------------------------------
# With scripts/test's stack (TEST_DATABASE_URL, TEST_REDIS_URL) it takes its own
# database and a high Redis database number; alone it starts its own stack.
OWN_STACK=""
# demo_stack DB: DATABASE_URL and REDIS_URL of an empty database DB.
demo_stack() {
  local db="$1" redis_db="${DEMO_REDIS_DB:-1023}"
  ensure_stack_packages
  command -v jq >/dev/null || ensure_packages jq
  if [ -n "${TEST_DATABASE_URL:-}" ] && [ -n "${TEST_REDIS_URL:-}" ]; then
    ADMIN_DB_URL="$TEST_DATABASE_URL"
    DATABASE_URL="${TEST_DATABASE_URL%/*}/$db"
    REDIS_URL="${TEST_REDIS_URL%/}/$redis_db"
    say "PostgreSQL and Redis of scripts/test: database $db, Redis database $redis_db"
  else
    OWN_STACK="$DEMO_DIR/stack-$db"
    # Not in a pipeline: they set PG_PORT and REDIS_PORT, the ports they got.
    start_postgres "$OWN_STACK/pg" 2> >(indent)
    start_redis "$OWN_STACK/redis" 2> >(indent)
    ADMIN_DB_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$db"
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  fi
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_DB_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" \
    || fail "cannot create the database $db"
  redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null || fail "cannot empty $REDIS_URL"
  DEMO_DB="$db"
  export DATABASE_URL REDIS_URL
}
demo_stack_down() {
  if [ -n "${DEMO_DB:-}" ]; then
    psql -X -q "$ADMIN_DB_URL" -c "DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE)" >/dev/null 2>&1 || true
    [ -z "$OWN_STACK" ] && redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null 2>&1 || true
  fi
  if [ -n "$OWN_STACK" ]; then
    stop_redis "$OWN_STACK/redis"
    stop_postgres "$OWN_STACK/pg"
  fi
}

# ---- vote-api processes -----------------------------------------------------------------
APP_PID=""
# start_app LOG SECONDS CMD...: starts vote-api (any command that ends up
# exec-ing it, `cargo run` included) on $BIND_ADDR and waits until /health
# answers; $STARTUP is the time that took. If another process took the port
# first, it starts again on a free_port (BIND_ADDR and VOTE_URL follow).
start_app() {
  APP_LOG="$1"; local limit="$2"; shift 2
  local t0="$EPOCHREALTIME"
  serve_on_port "$APP_LOG" "$limit" /health "${BIND_ADDR##*:}" env NO_COLOR=1 BIND_ADDR="127.0.0.1:{PORT}" "$@" \
    2> >(indent) || { APP_PID="$SERVED_PID"; fail "vote-api: $SERVED_ERROR"; }
  APP_PID="$SERVED_PID"
  # METRICS_URL as the run-book's port-forward gives it: the pod itself, never the ingress.
  export BIND_ADDR="127.0.0.1:$SERVED_PORT" VOTE_URL="http://127.0.0.1:$SERVED_PORT" METRICS_URL="http://127.0.0.1:$SERVED_PORT"
  STARTUP="$(since "$t0")"
}
# stop_app: SIGTERM (a graceful drain, as Kubernetes or mirrord's Ctrl-C do), then wait.
stop_app() {
  [ -n "$APP_PID" ] || return 0
  kill -TERM "$APP_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$APP_PID" 2>/dev/null || true
  wait "$APP_PID" 2>/dev/null || true
  APP_PID=""
}

# stop_deployed: the deployed replica that mirrord left running (phase 3 on).
DEPLOYED_PID=""
stop_deployed() {
  [ -n "$DEPLOYED_PID" ] || return 0
  local fixed="$APP_PID"
  APP_PID="$DEPLOYED_PID" APP_LOG="${DEPLOYED_LOG:-$APP_LOG}"
  stop_app
  APP_PID="$fixed" DEPLOYED_PID=""
}

# ---- the ingress: nginx in front of the demo's single replica ----------------------------
# scripts/lib/cluster.sh's nginx, settings generated from the chart's values,
# with one upstream: the replica mirrord steals from, or the build stealing.
PROXY_URL=""
# proxy_start ADDR: nginx in front of ADDR (host:port); VOTE_URL goes through it.
proxy_start() {
  ensure_cluster_packages
  CLUSTER_DIR="$DEMO_DIR/run/ingress" CLUSTER_REPLICAS=1
  mkdir -p "$CLUSTER_DIR/replica-1"
  printf '%s\n' "${1##*:}" >"$CLUSTER_DIR/replica-1/port"
  # It dies with its reason when nginx does not start.
  nginx_start
  PROXY_URL="$CLUSTER_URL"
  export VOTE_URL="$PROXY_URL"
}
# proxy_to ADDR: the upstream becomes ADDR (nginx reloads gracefully: streams
# already open stay where they are); VOTE_URL goes through the proxy again.
proxy_to() {
  printf '%s\n' "${1##*:}" >"$CLUSTER_DIR/replica-1/port"
  nginx_reload
  export VOTE_URL="$PROXY_URL"
  # The new workers answer once the reload is done: wait for the new upstream.
  for _ in $(seq 1 100); do
    [ "$(curl -fs --max-time 1 "$VOTE_URL/version" | jq -r .version 2>/dev/null)" = "$(curl -fs --max-time 1 "http://$1/version" | jq -r .version 2>/dev/null)" ] && return 0
    sleep 0.05
  done
  fail "nginx does not send the traffic to $1 after its reload"
}
proxy_stop() { [ -n "$PROXY_URL" ] && nginx_stop; PROXY_URL=""; }
# The settings that matter for the stream and for retries, as generated.
proxy_settings() {
  grep -oE '(proxy_buffering|proxy_read_timeout|proxy_next_upstream|keepalive_timeout) [^;]*' "$CLUSTER_DIR/nginx/nginx.conf" \
    | grep -v '^keepalive_timeout 75s' | paste -sd, | sed 's/,/, /g'
}

# ---- the temporary copy the fix is built in --------------------------------------------
# copy_sources DIR: the crate's sources (as they are in the work tree, edits
# included) and the patch, into DIR. cp -a keeps modification times, so cargo
# rebuilds only what changed since the copy's last build.
copy_sources() {
  local dir="$1"
  rm -rf "$dir"
  mkdir -p "$dir/deploy/demo"
  (cd "$ROOT" && cp -a Cargo.toml Cargo.lock build.rs src db assets benches "$dir/") || fail "cannot copy the sources"
  [ -d "$ROOT/.cargo" ] && cp -a "$ROOT/.cargo" "$dir/"
  cp -a "$ROOT/$PATCH_FILE" "$dir/$PATCH_FILE"
}

# seed_target DIR: gives the copy's target directory the dependencies that
# the work tree already compiled, as hard links (no copy, no disk). Only
# vote-api's own units are left out: the copy compiles them, and cargo and rustc
# rewrite those files in place, which through a link would alter the work
# tree's build. Dependencies are never rewritten: their file names carry a hash
# of everything they were built from.
seed_target() {
  local dst="$1/debug" src="$MAIN_TARGET/debug" sub
  for sub in deps build .fingerprint; do
    mkdir -p "$dst/$sub"
    [ -d "$src/$sub" ] || continue
    (cd "$src/$sub" && find . -mindepth 1 -maxdepth 1 ! -name '*vote_api*' ! -name '*vote-api*' -print0 \
      | xargs -0 -r cp -al --no-clobber -t "$dst/$sub/" 2>/dev/null) \
      || { note "cannot link $src/$sub into $dst (another file system?): the copy compiles its dependencies"; return 0; }
  done
}

# git apply outside any repository behaves like patch(1): keep git from finding
# the work tree's repository above the copy.
in_copy() { (cd "$1" && shift && GIT_CEILING_DIRECTORIES="$(dirname "$PWD")" "$@"); }

# promtool: on PATH, or the one scripts/check-deploy unpacked, or Debian's
# prometheus package unpacked into target/demo/tools (never installed: no
# service starts, nothing outside target/ changes).
find_promtool() {
  local dir="$DEMO_DIR/tools" tmp
  for PROMTOOL in "$(command -v promtool || true)" "$MAIN_TARGET/tools/debian/usr/bin/promtool" "$dir/usr/bin/promtool"; do
    [ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ] && return 0
  done
  say "apt-get download prometheus (for promtool)"
  apt-cache show prometheus >/dev/null 2>&1 || as_root apt-get update -qq
  tmp="$(mktemp -d)" && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus) || fail "apt-get download prometheus failed"
  rm -rf "$dir" && mkdir -p "$dir" && dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
  rm -rf "$tmp"
  PROMTOOL="$dir/usr/bin/promtool"
  [ -x "$PROMTOOL" ] || fail "no promtool in Debian's prometheus package"
}
