# Shared helpers for scripts/dev, scripts/test, scripts/bench and the demo
# rehearsal: install missing Debian packages, start a project-local
# PostgreSQL and Redis on chosen ports, stop them again. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { printf '\033[1;33m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

# Installs Debian packages that are missing (names of packages as arguments).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL server binaries (newest installed major) and Redis.
ensure_stack_packages() {
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || ensure_packages postgresql
  command -v redis-server >/dev/null || ensure_packages redis-server
  command -v curl >/dev/null || ensure_packages curl
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

# Ports for the project's own servers come from below the kernel's ephemeral
# range (ip_local_port_range): every client socket takes its local port from
# that range, and after a load test thousands of them sit there in TIME_WAIT,
# which a server's bind() collides with.
PORT_FLOOR=10000
ephemeral_low() {
  local low _
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  echo "$low"
}

# The local ports of every TCP socket, in any state (listening, connected,
# TIME_WAIT, ...), IPv4 and IPv6, one per line.
used_ports() {
  awk 'FNR > 1 {
    split($2, a, ":"); n = 0
    for (i = 1; i <= length(a[2]); i++) n = n * 16 + index("0123456789ABCDEF", substr(a[2], i, 1)) - 1
    print n
  }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -un
}

# free_port: a TCP port below the ephemeral range that no socket uses (a random
# pick, checked against used_ports). Another process may still take it before
# the server binds: start_postgres and start_redis retry on another port.
free_port() {
  local low port used span
  low="$(ephemeral_low)"
  span=$((low - PORT_FLOOR))
  [ "$span" -ge 1000 ] || die "the ephemeral range starts at $low (ip_local_port_range): no room for servers between $PORT_FLOOR and it"
  used=" $(used_ports | tr '\n' ' ') "
  for _ in $(seq 1 200); do
    port=$(( PORT_FLOOR + (RANDOM * 32768 + RANDOM) % span ))
    [[ "$used" == *" $port "* ]] || { echo "$port"; return 0; }
  done
  die "no free port found between $PORT_FLOOR and $low"
}

# Tries a server start up to this many times, on a new port after a bind failure.
PORT_ATTEMPTS=5
# bind_error LOG SEEN: the log line, after its first SEEN lines, saying the
# server's port was taken; fails if there is none.
bind_error() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -iE -m 1 'address already in use'; }

# PostgreSQL refuses to run as root, so root runs it as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres DIR [PORT]: initialises DIR on first use, starts the server on
# PORT (default: a free_port). If the port is taken by the time the server
# binds, it starts again on another free_port, up to PORT_ATTEMPTS times.
# PG_PORT is the port it listens on.
start_postgres() {
  local dir="$1" port="${2:-$(free_port)}" bin attempt log="$1/postgres.log" seen line
  bin="$(pg_bin)"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  # A server left over from an interrupted run holds the data folder: stop it.
  as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null
  for attempt in $(seq 1 "$PORT_ATTEMPTS"); do
    seen="$({ wc -l <"$log"; } 2>/dev/null || echo 0)"
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$log" -w -t 60 start \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 -c shared_buffers=256MB -c fsync=on" >/dev/null 2>&1; then
      PG_PORT="$port"
      log "PostgreSQL on 127.0.0.1:$port ($dir)"
      return 0
    fi
    line="$(bind_error "$log" "$seen")" || break
    log "PostgreSQL could not bind port $port (attempt $attempt/$PORT_ATTEMPTS): $line"
    port="$(free_port)"
  done
  tail -n 20 "$log" >&2
  die "PostgreSQL did not start on 127.0.0.1:$port (last lines of $log above)"
}

stop_postgres() {
  local dir="$1"
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
}

# psql_at PORT SQL...: runs SQL against the server as postgres.
psql_at() {
  local port="$1"; shift
  PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# start_redis DIR [PORT] [extra args]: no persistence; the counts are rebuilt
# from PostgreSQL. Retries on another port like start_postgres; REDIS_PORT is
# the port it listens on.
start_redis() {
  local dir="$1" port attempt log="$1/redis.log" seen line
  shift
  if [[ "${1:-}" =~ ^[0-9]+$ ]]; then port="$1"; shift; else port="$(free_port)"; fi
  mkdir -p "$dir"
  stop_redis "$dir"
  for attempt in $(seq 1 "$PORT_ATTEMPTS"); do
    seen="$({ wc -l <"$log"; } 2>/dev/null || echo 0)"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
      --pidfile "$dir/redis.pid" --logfile "$log" --save '' --appendonly no "$@" \
      || die "Redis did not start (redis-server refused its arguments: $*)"
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        REDIS_PORT="$port"
        log "Redis on 127.0.0.1:$port ($dir)"
        return 0
      fi
      bind_error "$log" "$seen" >/dev/null && break
      sleep 0.1
    done
    line="$(bind_error "$log" "$seen")" || break
    log "Redis could not bind port $port (attempt $attempt/$PORT_ATTEMPTS): $line"
    stop_redis "$dir"
    port="$(free_port)"
  done
  tail -n 20 "$log" >&2
  die "Redis did not answer on 127.0.0.1:$port (last lines of $log above)"
}

stop_redis() {
  local dir="$1" pid
  [ -f "$dir/redis.pid" ] || return 0
  pid="$(cat "$dir/redis.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/redis.pid"
}

# serve_on_port LOG SECONDS PATH PORT CMD...: starts CMD in the background, with
# {PORT} in its arguments replaced by PORT, output to LOG, until
# http://127.0.0.1:PORT/PATH answers 200. If CMD exits because the port was
# taken (its log says so), it starts again on a free_port, up to PORT_ATTEMPTS
# times. Sets SERVED_PID and SERVED_PORT; returns 1 with SERVED_ERROR set when
# CMD exits for another reason, or does not answer within SECONDS.
serve_on_port() {
  local log="$1" limit="$2" path="$3" port="$4" attempt line
  shift 4
  SERVED_PID="" SERVED_PORT="" SERVED_ERROR=""
  for attempt in $(seq 1 "$PORT_ATTEMPTS"); do
    "${@//\{PORT\}/$port}" >"$log" 2>&1 &
    SERVED_PID=$!
    for _ in $(seq 1 $((limit * 20))); do
      if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port$path"; then
        SERVED_PORT="$port"
        return 0
      fi
      kill -0 "$SERVED_PID" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$SERVED_PID" 2>/dev/null; then
      SERVED_ERROR="no answer on 127.0.0.1:$port$path within $limit s"
      return 1
    fi
    wait "$SERVED_PID" 2>/dev/null || true
    SERVED_PID=""
    line="$(bind_error "$log" 0)" || { SERVED_ERROR="exited before answering $path"; return 1; }
    log "port $port was taken (attempt $attempt/$PORT_ATTEMPTS): $line"
    port="$(free_port)"
  done
  SERVED_ERROR="could not bind a port in $PORT_ATTEMPTS attempts"
  return 1
}

# wait_http URL [SECONDS]: until the URL answers 200.
wait_http() {
  local url="$1" limit="${2:-30}"
  for _ in $(seq 1 $((limit * 10))); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$url did not answer within ${limit}s"
}
