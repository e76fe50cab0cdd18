# The --flood and --pages modes of scripts/bench (sourced by it, never run
# alone). Uses APP_PORT, PROBE_PORT, STACK, DURATION, FLOOD from scripts/bench.

# flood: FLOOD keep-alive voters (oha, from 127.0.0.1) against one process
# while, every 500 ms, a probe on the probe listener and a new client's vote
# on the public port are timed (curl, one fresh connection each, 5 s at
# most). The new client is a phone: another address (127.0.0.2) than the
# load tester's. A vote from the load tester's own address is timed too and
# printed as `own`: the flood's next connection, not a phone.
new_vote() { # KIND SOURCE-ADDRESS
  local out line code
  out="$(curl -sS -D - -o /dev/null --max-time 5 --interface "$2" -w 'status %{http_code} %{time_total}\n' \
      -H 'content-type: application/json' -d '{"choice":"print"}' \
      "http://127.0.0.1:$APP_PORT/vote" 2>/dev/null)" || true
  line="$(grep '^status ' <<<"$out")" || line="status 000 5"
  set -- "$1" $line
  code="$3"
  # A 503 must carry Retry-After: count it in the status as 503r when it does.
  [ "$code" = 503 ] && grep -qi '^retry-after:' <<<"$out" && code=503r
  echo "$1 $code $4"
}

flood() {
  local samples="$STACK/flood-samples.txt" end sampler_pids=()
  : >"$samples"
  log "oha: POST /vote, ${DURATION}s, $FLOOD keep-alive connections; probe + new client every 500 ms"
  oha -z "${DURATION}s" -c "$FLOOD" --no-tui --output-format json --wait-ongoing-requests-after-deadline \
    -m POST -T application/json -d '{"choice":"ai"}' \
    "http://127.0.0.1:$APP_PORT/vote" >"$STACK/flood.json" &
  local oha_pid=$!
  # Let oha open its connections before the first sample.
  sleep 1
  end=$(( $(date +%s) + DURATION - 2 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    ( curl -sS -o /dev/null --max-time 5 -w 'probe %{http_code} %{time_total}\n' \
        "http://127.0.0.1:$PROBE_PORT/ready/votes" || echo "probe 000 5" ) >>"$samples" &
    sampler_pids+=($!)
    new_vote vote 127.0.0.2 >>"$samples" &
    sampler_pids+=($!)
    new_vote own 127.0.0.1 >>"$samples" &
    sampler_pids+=($!)
    sleep 0.5
  done
  wait "$oha_pid"
  # Not a bare `wait`: the server is this shell's background job too.
  wait "${sampler_pids[@]}"
  python3 - "$STACK/flood.json" "$samples" "$FLOOD" "$DURATION" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
flood, duration = int(sys.argv[3]), float(sys.argv[4])
codes = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
ok = sum(v for k, v in codes.items() if 200 <= k < 300)
transport = sum(report.get("errorDistribution", {}).values())
pct = report["latencyPercentiles"]
print()
print(f"flood             {flood} keep-alive connections, {duration:.0f} s")
print(f"flood 2xx votes/s {ok / report['summary']['total']:,.0f}  (all answers/s {report['summary']['requestsPerSec']:,.0f})")
print(f"flood p99         {pct['p99'] * 1000:.2f} ms")
print(f"flood answers     " + ", ".join(f"{k}: {v:,}" for k, v in sorted(codes.items()))
      + f", transport errors: {transport:,}")
samples = {"probe": [], "vote": [], "own": []}
for line in open(sys.argv[2]):
    kind, code, seconds = line.split()
    samples[kind].append((code, float(seconds) * 1000))
def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
verdict = True
for kind, target in (("probe", "200 within 100 ms"), ("vote", "answered within 100 ms, >= 90 % 200"),
                     ("own", None)):
    got = samples[kind]
    if not got:
        print(f"{kind:17} no samples")
        verdict = False
        continue
    ms = [t for _, t in got]
    by = {}
    for code, _ in got:
        by[code] = by.get(code, 0) + 1
    print(f"{kind:17} n={len(got)}  " + ", ".join(f"{c}: {n}" for c, n in sorted(by.items()))
          + f"  p50 {q(ms, .5):.1f} ms  p99 {q(ms, .99):.1f} ms  max {max(ms):.1f} ms"
          + (f"   (target: {target})" if target else "   (the load tester's address: no target)"))
    slow = max(ms) > 100
    if target is None:
        continue
    if kind == "probe":
        verdict &= by.get("200", 0) == len(got) and not slow
    else:
        answered = by.get("200", 0) + by.get("503r", 0)
        verdict &= answered == len(got) and not slow and by.get("200", 0) >= 0.9 * len(got)
print(f"targets met: {'yes' if verdict else 'NO'}")
PY
}

# pages: requests/s and p99 of each page (gzip, 128 connections).
pages() {
  local asset
  asset="$(curl -fsS "http://127.0.0.1:$APP_PORT/" | grep -o '/static/[^"]*\.css' | head -n1)"
  [ -n "$asset" ] || die "no stylesheet link on /"
  : >"$STACK/pages.txt"
  for path in / /results /timeline /votes "$asset"; do
    log "oha: GET $path, ${DURATION}s, 128 connections, gzip"
    oha -z "${DURATION}s" -c 128 --no-tui --output-format json --wait-ongoing-requests-after-deadline -H 'Accept-Encoding: gzip' \
      "http://127.0.0.1:$APP_PORT$path" >"$STACK/page.json"
    python3 - "$STACK/page.json" "$path" >>"$STACK/pages.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
bad = sum(v for k, v in codes.items() if k != 200) + sum(r.get("errorDistribution", {}).values())
print(f"{sys.argv[2]:40} {r['summary']['requestsPerSec']:>10,.0f} req/s  p99 {r['latencyPercentiles']['p99'] * 1000:7.2f} ms  non-200 {bad}")
PY
  done
  echo
  cat "$STACK/pages.txt"
  python3 - "$STACK/pages.txt" <<'PY'
import sys
rates = {}
for line in open(sys.argv[1]):
    path, rate = line.split()[:2]
    rates[path] = float(rate.replace(",", ""))
share = rates["/results"] / rates["/"]
print(f"/results / /      {share:.0%} (target: at least 50 %)")
PY
}
