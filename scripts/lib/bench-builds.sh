# scripts/bench --against / --replicas: the same oha load, in one sitting,
# against this build and another binary, alternating, each run on a fresh
# database and Redis. Sourced by scripts/bench after the stack is up (it
# sets BIN, PG_PORT, REDIS_PORT, STACK, DURATION, CONNECTIONS, ROUNDS,
# REPLICAS, AGAINST).

# fresh_session: an empty `conference` database and an empty Redis.
fresh_session() {
  psql_at "$PG_PORT" -c "DROP DATABASE IF EXISTS conference WITH (FORCE)" -c "CREATE DATABASE conference"
  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
}

# run_build LABEL BINARY ROUND: REPLICAS processes of BINARY, each loaded
# by its own oha; appends "LABEL ROUND votes/s p99-ms ok rows" to results.
run_build() {
  local label="$1" bin="$2" round="$3" i port pids=() ports=()
  fresh_session
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" "$bin" seed --partners 1000 >/dev/null
  for i in $(seq 1 "$REPLICAS"); do
    port="$(free_port)"
    BIND_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
      "$bin" serve >"$STACK/$label-$round-$i.log" 2>&1 &
    pids+=($!); ports+=("$port")
  done
  for port in "${ports[@]}"; do wait_http "http://127.0.0.1:$port/ready"; done
  log "$label, round $round: oha POST /vote, ${DURATION}s, $CONNECTIONS connections over $REPLICAS process(es)"
  local per=$(( (CONNECTIONS + REPLICAS - 1) / REPLICAS )) oha_pids=()
  for i in "${!ports[@]}"; do
    oha -z "${DURATION}s" -c "$per" --no-tui --output-format json --wait-ongoing-requests-after-deadline \
      -m POST -T application/json -d '{"choice":"ai"}' \
      "http://127.0.0.1:${ports[$i]}/vote" >"$STACK/oha-$label-$round-$i.json" &
    oha_pids+=($!)
  done
  for i in "${oha_pids[@]}"; do wait "$i"; done
  local rows
  rows="$(psql_at "$PG_PORT" -d conference -tAc 'SELECT count(*) FROM votes')"
  kill "${pids[@]}" 2>/dev/null || true
  for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
  python3 - "$label" "$round" "$rows" "$STACK"/oha-"$label-$round"-*.json >>"$STACK/results" <<'PY'
import json, sys
label, round_, rows, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
rps = ok = 0
p99 = 0.0
for f in files:
    r = json.load(open(f))
    codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    ok += sum(v for k, v in codes.items() if 200 <= k < 300)
    rps += r["summary"]["requestsPerSec"]
    p99 = max(p99, r["latencyPercentiles"]["p99"] * 1000)
print(label, round_, f"{rps:.0f}", f"{p99:.2f}", ok, rows)
PY
}

compare_builds() {
  local rounds="${ROUNDS:-0}" round
  [ "$rounds" -gt 0 ] || rounds=3
  : >"$STACK/results"
  for round in $(seq 1 "$rounds"); do
    run_build this "$BIN" "$round"
    [ -z "$AGAINST" ] || run_build other "$AGAINST" "$round"
  done
  python3 - "$STACK/results" "$AGAINST" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
other = sys.argv[2]
print()
print(f"{'build':6} {'round':>5} {'votes/s':>9} {'p99 ms':>8} {'2xx':>9} {'rows':>9}")
bad = False
for label, rnd, rps, p99, ok, rows in runs:
    flag = "" if int(ok) == int(rows) else "  rows != 2xx"
    bad |= bool(flag)
    print(f"{label:6} {rnd:>5} {int(rps):>9,} {float(p99):>8.2f} {int(ok):>9,} {int(rows):>9,}{flag}")
medians = {}
for label in ("this", "other"):
    rates = [float(r[2]) for r in runs if r[0] == label]
    if rates:
        medians[label] = statistics.median(rates)
        print(f"median {label:6} {medians[label]:>10,.0f} votes/s")
if "other" in medians:
    print(f"this / other      {medians['this'] / medians['other']:.1%}  (other = {other})")
sys.exit(1 if bad else 0)
PY
}
