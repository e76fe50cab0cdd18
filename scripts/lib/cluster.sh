# The production shape on one machine (SPEC §11.2), shared by scripts/cluster,
# scripts/chaos, scripts/browser-test (its part through nginx) and the
# rehearsal (deploy/demo/lib.sh's proxy_*): Debian's
# nginx as the chart's ingress (its settings generated from the chart's values
# by scripts/lib/nginx-conf.py), N vote-api replicas, one PostgreSQL, one
# Redis, optionally Prometheus and Alertmanager. Everything runs as project-
# local processes under CLUSTER_DIR; no system service is started.
#
# Source it after scripts/lib/stack.sh. Its state (ports, pids, versions)
# lives in files under CLUSTER_DIR, so another process (scripts/chaos's
# driver, the browser test) can act on the same cluster: `cluster_load DIR`
# then replica_stop / replica_start, or stack.sh's stop_redis / start_redis
# and stop_postgres / start_postgres on "$CLUSTER_DIR/redis" and "/pg".
# shellcheck disable=SC2034 # CLUSTER_* are results for the caller

CLUSTER_BIN="${CLUSTER_BIN:-$ROOT/target/debug/vote-api}"
CLUSTER_VALUES="$ROOT/deploy/helm/conference-app/values.yaml"
CLUSTER_DB=conference
# How long a replica may take to answer /ready/votes after it starts.
REPLICA_START_SECONDS=60
# How long a replica may drain after SIGTERM before it is killed (the app's
# own grace is 7 s, SHUTDOWN_GRACE in src/http/mod.rs).
REPLICA_STOP_SECONDS=15

# alive PID: the process exists and is not a zombie (a replica started by one
# shell and stopped by another stays a zombie until its parent reaps it).
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

ensure_cluster_packages() {
  ensure_stack_packages
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || ensure_packages nginx
  command -v python3 >/dev/null || ensure_packages python3
  python3 -c 'import yaml' 2>/dev/null || ensure_packages python3-yaml
  command -v psql >/dev/null || ensure_packages postgresql-client
  command -v redis-cli >/dev/null || ensure_packages redis-tools
}
nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# cluster_save KEY VALUE: one fact of the running cluster, for cluster_load.
cluster_save() { mkdir -p "$CLUSTER_DIR/state" && printf '%s\n' "$2" >"$CLUSTER_DIR/state/$1"; }
cluster_get() { cat "$CLUSTER_DIR/state/$1" 2>/dev/null; }

# cluster_load DIR: the environment of a cluster started by another process.
cluster_load() {
  CLUSTER_DIR="$1"
  [ -d "$CLUSTER_DIR/state" ] || die "no cluster in $CLUSTER_DIR"
  PG_PORT="$(cluster_get pg_port)" REDIS_PORT="$(cluster_get redis_port)"
  CLUSTER_REPLICAS="$(cluster_get replicas)" CLUSTER_URL="$(cluster_get url)"
  cluster_urls
}
cluster_urls() {
  DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$CLUSTER_DB"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  ADMIN_TOKEN="$(cluster_get admin_token)"
  # What every replica runs with: the same database, Redis and admin token. A
  # command, not a function: started in the background, its pid is the replica's.
  REPLICA_ENV=(env -u CONFERENCE -u PUBLIC_URL -u METRICS_ADDR NO_COLOR=1 LOG_FORMAT=text RUST_LOG="${RUST_LOG:-info}"
    DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" ADMIN_TOKEN="$ADMIN_TOKEN")
}

# cluster_databases DIR: PostgreSQL and Redis under DIR, an empty database
# $CLUSTER_DB migrated and seeded, Redis empty.
cluster_databases() {
  CLUSTER_DIR="$1"
  mkdir -p "$CLUSTER_DIR"
  rm -rf "$CLUSTER_DIR/state"
  start_postgres "$CLUSTER_DIR/pg"
  cluster_save pg_port "$PG_PORT"
  PGOPTIONS='-c client_min_messages=warning' psql_at "$PG_PORT" \
    -c "DROP DATABASE IF EXISTS $CLUSTER_DB WITH (FORCE)" -c "CREATE DATABASE $CLUSTER_DB" >/dev/null
  start_redis "$CLUSTER_DIR/redis"
  cluster_save redis_port "$REDIS_PORT"
  cluster_save admin_token "${ADMIN_TOKEN:-cluster-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
  cluster_urls
  [ -x "$CLUSTER_BIN" ] || die "$CLUSTER_BIN is missing: cargo build first"
  "${REPLICA_ENV[@]}" "$CLUSTER_BIN" migrate >"$CLUSTER_DIR/migrate.log" 2>&1 || { cat "$CLUSTER_DIR/migrate.log" >&2; die "vote-api migrate failed"; }
  "${REPLICA_ENV[@]}" "$CLUSTER_BIN" seed --partners 1000 >"$CLUSTER_DIR/seed.log" 2>&1 || { cat "$CLUSTER_DIR/seed.log" >&2; die "vote-api seed failed"; }
}

# replica_start I VERSION: replica I (1-based) with APP_VERSION=VERSION on its
# port (a free one the first time) until /ready/votes answers; when the port
# was taken and it moved, nginx follows. REPLICA_SECONDS: how long that took.
replica_start() {
  local i="$1" version="$2" dir="$CLUSTER_DIR/replica-$1" port t0="$EPOCHREALTIME" old
  mkdir -p "$dir"
  old="$(cat "$dir/port" 2>/dev/null || true)"
  port="${old:-$(free_port)}"
  # The log of each earlier incarnation stays, numbered.
  [ -f "$dir/vote-api.log" ] && mv "$dir/vote-api.log" "$dir/vote-api.$(ls "$dir" | grep -c '^vote-api\.').log"
  if ! serve_on_port "$dir/vote-api.log" "$REPLICA_START_SECONDS" /ready/votes "$port" \
    "${REPLICA_ENV[@]}" APP_VERSION="$version" BIND_ADDR="127.0.0.1:{PORT}" "$CLUSTER_BIN" serve; then
    [ -n "$SERVED_PID" ] && printf '%s\n' "$SERVED_PID" >"$dir/pid"
    tail -n 20 "$dir/vote-api.log" >&2
    die "replica $i: $SERVED_ERROR"
  fi
  printf '%s\n' "$SERVED_PID" >"$dir/pid"
  printf '%s\n' "$SERVED_PORT" >"$dir/port"
  printf '%s\n' "$version" >"$dir/version"
  REPLICA_SECONDS="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')"
  if [ -n "$old" ] && [ "$old" != "$SERVED_PORT" ] && [ -f "$CLUSTER_DIR/nginx/nginx.pid" ]; then
    nginx_reload
  fi
}
replica_pid() { cat "$CLUSTER_DIR/replica-$1/pid" 2>/dev/null; }
replica_port() { cat "$CLUSTER_DIR/replica-$1/port" 2>/dev/null; }

# replica_stop I [SIGNAL]: SIGTERM (a graceful drain, as Kubernetes does) or
# SIGNAL, then waits until it is gone (SIGKILL after REPLICA_STOP_SECONDS).
# REPLICA_SECONDS: how long it took to exit.
replica_stop() {
  local i="$1" sig="${2:-TERM}" pid t0="$EPOCHREALTIME"
  pid="$(replica_pid "$i")"
  REPLICA_SECONDS=0
  [ -n "$pid" ] && alive "$pid" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((REPLICA_STOP_SECONDS * 20))); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then
    log "replica $i did not exit within $REPLICA_STOP_SECONDS s of SIG$sig: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  fi
  REPLICA_SECONDS="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')"
}

# ---- nginx ------------------------------------------------------------------
nginx_write() {
  local dir="$CLUSTER_DIR/nginx" ports=() i
  for i in $(seq 1 "$CLUSTER_REPLICAS"); do ports+=("$(replica_port "$i")"); done
  mkdir -p "$dir/tmp"
  python3 "$ROOT/scripts/lib/nginx-conf.py" "$CLUSTER_VALUES" "$ROOT/src/http/mod.rs" "$dir" \
    "$(cluster_get nginx_port)" "${ports[@]}" >"$dir/nginx.conf.new" || die "cannot generate nginx.conf from $CLUSTER_VALUES"
  mv "$dir/nginx.conf.new" "$dir/nginx.conf"
}
nginx_cmd() { "$(nginx_bin)" -p "$CLUSTER_DIR/nginx" -e "$CLUSTER_DIR/nginx/error.log" -c "$CLUSTER_DIR/nginx/nginx.conf" "$@"; }
# worker_left PID: the nginx worker is gone or no longer listens.
worker_left() { grep -qs 'shutting down' "/proc/$1/cmdline" || ! alive "$1"; }
nginx_reload() {
  local old pid
  # The workers of the old configuration: until each has closed its listening
  # socket, a new connection may still reach one of them (and the old upstream).
  old="$(pgrep -P "$CLUSTER_NGINX_PID" || true)"
  nginx_write
  nginx_cmd -s reload 2>>"$CLUSTER_DIR/nginx/error.log" || die "nginx -s reload failed ($CLUSTER_DIR/nginx/error.log)"
  # nginx retitles a worker "is shutting down" right before it closes its
  # listeners; the master starts the new workers before it tells the old ones.
  for pid in $old; do
    for _ in $(seq 1 200); do
      if worker_left "$pid"; then break; fi
      sleep 0.025
    done
    worker_left "$pid" || die "nginx worker $pid still takes connections 5 s after the reload"
  done
}

# nginx_start: in front of the replicas, on a free port (another one if it
# was taken), until /health answers through it. CLUSTER_URL is its URL.
nginx_start() {
  local dir="$CLUSTER_DIR/nginx" attempt port seen
  mkdir -p "$dir"
  for attempt in $(seq 1 "$PORT_ATTEMPTS"); do
    port="$(free_port)"
    cluster_save nginx_port "$port"
    nginx_write
    nginx_cmd -t >"$dir/test.log" 2>&1 || { cat "$dir/test.log" >&2; die "nginx rejects the generated $dir/nginx.conf"; }
    seen="$({ wc -l <"$dir/error.log"; } 2>/dev/null || echo 0)"
    # Not daemonised, and not through the nginx_cmd function (a function in the
    # background is a subshell): $! is nginx's master itself.
    "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >>"$dir/error.log" 2>&1 &
    CLUSTER_NGINX_PID=$!
    cluster_save nginx_pid "$CLUSTER_NGINX_PID"
    for _ in $(seq 1 100); do
      curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" && break
      alive "$CLUSTER_NGINX_PID" || break
      sleep 0.05
    done
    if alive "$CLUSTER_NGINX_PID"; then
      CLUSTER_URL="http://127.0.0.1:$port"
      cluster_save url "$CLUSTER_URL"
      curl -fs -o /dev/null --max-time 1 "$CLUSTER_URL/health" || die "nginx on $port does not reach the replicas ($dir/error.log)"
      log "nginx $("$(nginx_bin)" -v 2>&1 | sed 's,.*/,,') on $CLUSTER_URL ($dir/nginx.conf)"
      return 0
    fi
    bind_error "$dir/error.log" "$seen" >/dev/null || { tail -n 5 "$dir/error.log" >&2; die "nginx did not start"; }
    log "nginx could not bind port $port (attempt $attempt/$PORT_ATTEMPTS)"
  done
  die "nginx could not bind a port in $PORT_ATTEMPTS attempts"
}
nginx_stop() {
  local pid
  pid="$(cluster_get nginx_pid)"
  [ -n "$pid" ] && alive "$pid" || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || return 0; sleep 0.05; done
  kill -TERM "$pid" 2>/dev/null || true
}

# ---- Prometheus and Alertmanager (--observability) ---------------------------------
# As the rehearsal runs them (deploy/demo/alert-path.sh): the chart's rules and
# Alertmanager configuration, Slack replaced by a local receiver; Prometheus
# scrapes every replica.
cluster_observability() {
  local obs="$CLUSTER_DIR/observability" i targets=()
  # shellcheck source=deploy/demo/lib.sh
  source "$ROOT/deploy/demo/lib.sh"
  DEMO_DIR="$obs"
  # shellcheck source=deploy/demo/alert-path.sh
  source "$ROOT/deploy/demo/alert-path.sh"
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/promtool ]; then
    PROMETHEUS=/usr/bin/prometheus ALERTMANAGER=/usr/bin/prometheus-alertmanager PROMTOOL=/usr/bin/promtool
    find_alert_tools() { :; }
    find_promtool() { :; }
  else
    find_promtool
  fi
  BIND_ADDR="127.0.0.1:$(replica_port 1)"
  alert_path_start
  for i in $(seq 1 "$CLUSTER_REPLICAS"); do targets+=("127.0.0.1:$(replica_port "$i")"); done
  python3 - "$ALERT_DIR/prometheus.yml" "${targets[@]}" <<'PY' || die "cannot add the replicas to prometheus.yml"
import sys, yaml
path, *targets = sys.argv[1:]
text = open(path).read()
config = yaml.safe_load(text)
config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
with open(path, "w") as f:
    f.write(text.splitlines()[0] + " Every replica of scripts/cluster.\n")
    yaml.safe_dump(config, f, sort_keys=False)
PY
  kill -HUP "${ALERT_PIDS[2]}" 2>/dev/null || die "cannot reload Prometheus"
  CLUSTER_PROMETHEUS="http://$ALERT_PROM_ADDR" CLUSTER_ALERTMANAGER="http://$ALERT_AM_ADDR"
  cluster_save prometheus "$CLUSTER_PROMETHEUS"
}

# ---- all of it ------------------------------------------------------------------------
# cluster_up DIR REPLICAS VERSION: databases, REPLICAS replicas, nginx. {I}
# in VERSION is the replica's number (browser-r{I}: each its own version).
cluster_up() {
  local dir="$1" n="$2" version="$3" i
  ensure_cluster_packages
  cluster_databases "$dir"
  CLUSTER_REPLICAS="$n"
  cluster_save replicas "$n"
  for i in $(seq 1 "$n"); do
    rm -rf "$CLUSTER_DIR/replica-$i"
    replica_start "$i" "${version//\{I\}/$i}"
    log "replica $i ($(cat "$CLUSTER_DIR/replica-$i/version")) on 127.0.0.1:$(replica_port "$i"), ready after $REPLICA_SECONDS s"
  done
  nginx_start
}

cluster_down() {
  local i pid
  [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/state" ] || return 0
  # Defined once cluster_observability sourced alert-path.sh.
  declare -F alert_path_stop >/dev/null && alert_path_stop
  nginx_stop
  for i in $(seq 1 "${CLUSTER_REPLICAS:-0}"); do
    pid="$(replica_pid "$i")"
    [ -n "$pid" ] && alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  for i in $(seq 1 "${CLUSTER_REPLICAS:-0}"); do replica_stop "$i"; done
  stop_redis "$CLUSTER_DIR/redis"
  stop_postgres "$CLUSTER_DIR/pg"
}
