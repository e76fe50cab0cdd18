# The --streams and --floor modes of scripts/bench (sourced by it, never run
# alone): `crowd` holds N screens while oha posts votes, `churn` connects and
# drops N screens ROUNDS times and follows the server's memory, `floor`
# measures vote-api's CPU per delivered frame against the floor's. Uses
# APP_PID, APP_PORT, STACK, STREAMS, ROUNDS, DURATION, CONNECTIONS from
# scripts/bench.

LOAD="$ROOT/target/release/examples/sse-load"
# One client process per this many screens: a process may hold at most
# 20,000 open files, and each source address has its own ephemeral ports.
PER_CLIENT=9000

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$APP_PID/status"; }
# cpu_ticks PID: user + system time of every thread of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ="$(getconf CLK_TCK)"
# frames_of: votes frames the screens received after their first, summed over clients.
frames_of() { python3 -c 'import json,sys; print(sum(json.loads(open(p).read().splitlines()[-1])["frames"] for p in sys.argv[1:]))' "$STACK"/load-*.out; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$APP_PID/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }

# metric NAME: the value of one series of /metrics.
metric() {
  curl -fsS "http://127.0.0.1:$APP_PORT/metrics" | awk -v s="$1" '$1 == s {print $2}'
}

# The choices the clients' pacers vote for, one each: oha votes ai, so each
# client knows its probe choice's count exactly and times its screens on it.
PROBES=(print stare revert restart)

# start_clients HOLD PACE_MS ROUND: one background client per PER_CLIENT
# screens, their PIDs in CLIENTS, outputs in $STACK/load-N.out. Each round
# uses fresh source addresses: the last round's ports are in TIME_WAIT. So
# does each run (SOURCE_NET, random per run): with the previous run's
# ~18,000 ports still in TIME_WAIT on the same address, the clients' binds
# spent tens of seconds of their own CPU while the server idled, and the
# connect time measured the client.
SOURCE_NET="$(( RANDOM % 250 + 1 ))"
start_clients() {
  local hold="$1" pace="$2" round="$3" left="$STREAMS" i=0 n port="${4:-$APP_PORT}"
  rm -f "$STACK"/load-*.out "$STACK"/load-*.err
  [ "$STREAMS" -le $(( PER_CLIENT * ${#PROBES[@]} )) ] \
    || die "at most $(( PER_CLIENT * ${#PROBES[@]} )) screens: one client per $PER_CLIENT, each with its own probe choice"
  CLIENTS=()
  while [ "$left" -gt 0 ]; do
    n=$(( left < PER_CLIENT ? left : PER_CLIENT ))
    "$LOAD" --addr "127.0.0.1:$port" --source "127.$SOURCE_NET.$((round + 1)).$((i + 2))" --streams "$n" \
      --hold "$hold" --pace-ms "$pace" --probe "${PROBES[$i]}" >"$STACK/load-$i.out" 2>"$STACK/load-$i.err" &
    CLIENTS+=("$!")
    left=$(( left - n )); i=$(( i + 1 ))
  done
}

# Until every client printed `connected N` (or 180 s passed).
await_connected() {
  local i
  for _ in $(seq 1 1800); do
    local ready=0
    for i in "${!CLIENTS[@]}"; do grep -q '^connected' "$STACK/load-$i.out" 2>/dev/null && ready=$((ready + 1)); done
    [ "$ready" -eq "${#CLIENTS[@]}" ] && return 0
    sleep 0.1
  done
  die "the screens did not connect within 180 s (see $STACK/load-*.err)"
}

await_clients() {
  local pid
  for pid in "${CLIENTS[@]}"; do wait "$pid" || die "a load client failed (see $STACK/load-*.err)"; done
}

# Until the server holds no stream any more (at most 30 s).
await_streams_gone() {
  for _ in $(seq 1 300); do
    [ "$(metric 'connections_open{budget="stream"}')" = "0" ] && return 0
    sleep 0.1
  done
  log "streams still open after 30 s: $(metric 'connections_open{budget="stream"}')"
}

crowd() {
  log "$STREAMS screens on /stream, then oha: POST /vote, ${DURATION}s, $CONNECTIONS connections"
  local start_rss; start_rss="$(rss_kb)"
  start_clients "$((DURATION + 2))" 100 0
  await_connected
  local connected_rss; connected_rss="$(rss_kb)"
  local cpu_from; cpu_from="$(cpu_ticks "$APP_PID")"
  oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json --wait-ongoing-requests-after-deadline \
    -m POST -T application/json -d '{"choice":"ai"}' \
    "http://127.0.0.1:$APP_PORT/vote" >"$STACK/oha.json"
  await_clients
  log "skips (sse_lagged_total) $(metric sse_lagged_total), frame gap now $(metric sse_frame_gap_seconds) s"
  local cpu_s; cpu_s="$(awk -v a="$cpu_from" -v b="$(cpu_ticks "$APP_PID")" -v hz="$TICK_HZ" 'BEGIN {print (b - a) / hz}')"
  python3 - "$STACK/oha.json" "$STREAMS" "$connected_rss" "$(hwm_kb)" "$start_rss" "$cpu_s" "$STACK"/load-*.out <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
streams, rss_kb, hwm_kb, start_kb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu_s = float(sys.argv[6])
clients = [json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[7:]]
codes = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
failed = sum(v for k, v in codes.items() if k >= 300) + sum(report.get("errorDistribution", {}).values())
failed += sum(c["pacer_failures"] for c in clients)
connected = sum(c["connected"] for c in clients)
worst = lambda key: max(c[key] for c in clients)
print()
print(f"screens connected      {connected:,} of {streams:,} (refused {sum(c['refused'] for c in clients)})")
print(f"connect time p99/max   {worst('connect_ms_p99'):.0f} / {worst('connect_ms_max'):.0f} ms (from client start)")
print(f"vote->screen p50/p99   {worst('delivery_ms_p50'):.1f} / {worst('delivery_ms_p99'):.1f} ms ({sum(c['deliveries'] for c in clients):,} deliveries; worst client)")
print(f"missed updates         {sum(c['missed'] for c in clients)}")
rate = sum(c["frames"] / max(c["held_s"], 0.001) for c in clients) / max(connected, 1)
print(f"votes frames/s/screen  {rate:.1f} (while the votes flowed and after)")
print(f"votes/s                {report['summary']['requestsPerSec']:,.0f}")
print(f"vote p99               {report['latencyPercentiles']['p99'] * 1000:.2f} ms")
print(f"failed votes           {failed}")
print(f"RSS, screens connected {rss_kb / 1024:.1f} MB ({rss_kb * 1024 / max(connected, 1) / 1024:.1f} KiB per screen incl. the base)")
print(f"idle screen memory     {(rss_kb - start_kb) / max(connected, 1):.2f} KiB (RSS connected - RSS before, per screen)")
frames = sum(c["frames"] for c in clients)
print(f"CPU per frame          {cpu_s * 1e6 / max(frames, 1):.2f} us ({cpu_s:.2f} s CPU / {frames:,} frames delivered; whole process, votes included)")
print(f"peak RSS               {hwm_kb / 1024:.1f} MB")
ok = connected == streams and failed == 0 and sum(c["missed"] for c in clients) == 0
sys.exit(0 if ok else 1)
PY
}

churn() {
  local start round idle
  start="$(rss_kb)"
  echo
  echo "RSS at start-up        $(mb "$start")"
  for round in $(seq 1 "$ROUNDS"); do
    start_clients 1 1000 "$round"
    await_connected
    local connected; connected="$(awk '/^connected/ {s += $2} END {print s}' "$STACK"/load-*.out)"
    local held; held="$(rss_kb)"
    await_clients
    await_streams_gone
    echo "round $round: $connected screens  RSS with them $(mb "$held"), after they left $(mb "$(rss_kb)")"
  done
  for idle in $(seq 1 30); do
    [ "$(rss_kb)" -le $(( start + 32 * 1024 )) ] && break
    sleep 1
  done
  echo "RSS after ${idle}s idle    $(mb "$(rss_kb)") (start-up + $(mb $(( $(rss_kb) - start ))))"
  echo "peak RSS               $(mb "$(hwm_kb)")"
  [ "$(rss_kb)" -le $(( start + 32 * 1024 )) ]
}

# floor: the same N screens (sse-load, pacer voting every 100 ms) on the
# floor (benches/floor.rs: one thread, one plain write per screen and frame,
# every 100 ms) and on vote-api, one after the other in this sitting; CPU
# per delivered votes frame of each whole process and their ratio.
floor() {
  local frame port pid from to hold=$((DURATION))
  frame="$(printf 'event: votes\ndata: %s\n\n' "$(curl -fsS "http://127.0.0.1:$APP_PORT/votes")")"
  port="$(free_port)"
  "$ROOT/target/release/examples/floor" --addr "127.0.0.1:$port" --frame "$frame" >"$STACK/floor.log" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:$port/votes"
  local round=1 results=()
  for target in floor vote-api; do
    local at="$APP_PORT" watched="$APP_PID"
    [ "$target" = floor ] && { at="$port"; watched="$pid"; }
    log "$target: $STREAMS screens, ${hold}s"
    start_clients "$hold" 100 "$round" "$at"
    await_connected
    from="$(cpu_ticks "$watched")"
    await_clients
    to="$(cpu_ticks "$watched")"
    results+=("$target $(( to - from )) $(frames_of)")
    round=$((round + 1))
    [ "$target" = floor ] && { kill "$pid"; wait "$pid" 2>/dev/null || true; }
  done
  python3 - "$TICK_HZ" "$STREAMS" "${results[@]}" <<'PY'
import sys
hz, streams = int(sys.argv[1]), int(sys.argv[2])
per = {}
print()
for line in sys.argv[3:]:
    name, ticks, frames = line.split()
    cpu = int(ticks) / hz
    per[name] = cpu * 1e6 / max(int(frames), 1)
    print(f"{name:9} {streams:,} screens  CPU {cpu:.2f} s  frames delivered {int(frames):,}  CPU per frame {per[name]:.2f} us")
ratio = per["vote-api"] / per["floor"]
print(f"vote-api / floor       {ratio:.2f}x (target <= 1.5x)")
PY
}
