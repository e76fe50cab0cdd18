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

# A TCP port on 127.0.0.1 nobody listens on (a random pick, checked).
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( (RANDOM % 30000) + 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  die "no free port found"
}

# PostgreSQL refuses to run as root, so root runs it as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres DIR PORT: initialises DIR on first use, starts the server.
start_postgres() {
  local dir="$1" port="$2" bin
  bin="$(pg_bin)"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  # A server left over from an interrupted run holds the data folder: stop it.
  as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 -c shared_buffers=256MB -c fsync=on" >/dev/null \
    || { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  log "PostgreSQL on 127.0.0.1:$port ($dir)"
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

# start_redis DIR PORT [extra args]: no persistence; the counts are rebuilt from PostgreSQL.
start_redis() {
  local dir="$1" port="$2"; shift 2
  mkdir -p "$dir"
  stop_redis "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no "$@" \
    || die "Redis did not start"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && { log "Redis on 127.0.0.1:$port ($dir)"; return 0; }
    sleep 0.1
  done
  die "Redis did not answer on port $port"
}

stop_redis() {
  local dir="$1" pid
  [ -f "$dir/redis.pid" ] || return 0
  pid="$(cat "$dir/redis.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/redis.pid"
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
