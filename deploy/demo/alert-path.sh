# The alert path of the talk, end to end with the real programs: Prometheus
# scrapes the rehearsal's vote-api with the chart's own rule file, Alertmanager
# routes with the chart's own configuration, and a local webhook receiver
# stands in for Slack. Sourced by deploy/demo/rehearse after lib.sh:
#
#   alert_path_start         before phase 1: tools, configs, the three programs,
#                            the vote-api target up
#   alert_expect NAME T0     waits for NAME's Slack message, checks its labels and
#                            annotations and the time since T0 against the bound
#   alert_path_stop          (rehearse's cleanup)
#
# Prometheus and Alertmanager are Debian 12's packages, unpacked into the
# project's tool folder like promtool (never installed, no service started).
# shellcheck disable=SC2034 # ALERT_SECONDS is a result for the caller

ALERT_DIR="$DEMO_DIR/run/alert-path"
# Short intervals for the rehearsal (the chart scrapes every 5 s): the bound
# below adds them to the rules' own `for` and Alertmanager's own group_wait.
SCRAPE_SECONDS=1
EVAL_SECONDS=1
# On top of that sum: one more evaluation (a scrape can land just after an
# evaluation started: the next one sees it), and a margin for the hops nothing
# configures (Prometheus sending to Alertmanager, Alertmanager's flush and
# notifier, the receiver) on a shared 2-core box that may be building. It is
# a bound on waiting, not a speed limit, like the tests' WAIT (10 s): the
# delays it must catch are structural and far longer, such as Alertmanager's
# group_interval (1 m) for a group that already fired, or a missed rule.
# With 3 s, three programs' scheduling on a loaded box made it flaky.
ALERT_MARGIN_SECONDS=10
ALERT_RULES="deploy/helm/conference-app/files/prometheus-rules.yml"
ALERT_AM_CONFIG="deploy/helm/conference-app/files/alertmanager.yml"
ALERT_COMPOSE_PROM="deploy/prometheus/prometheus.yml"
ALERT_CHART_PROM="deploy/helm/conference-app/templates/prometheus-config.yaml"
ALERT_PIDS=()

# Debian's prometheus and prometheus-alertmanager: where scripts/check-deploy
# unpacked them, or unpacked here into target/demo/tools.
find_alert_tools() {
  local dir tmp
  for dir in "$MAIN_TARGET/tools/debian" "$DEMO_DIR/tools"; do
    if [ -x "$dir/usr/bin/prometheus" ] && [ -x "$dir/usr/bin/prometheus-alertmanager" ]; then
      PROMETHEUS="$dir/usr/bin/prometheus" ALERTMANAGER="$dir/usr/bin/prometheus-alertmanager"
      return 0
    fi
  done
  dir="$DEMO_DIR/tools"
  say "apt-get download prometheus prometheus-alertmanager (unpacked into ${dir#"$ROOT"/})"
  apt-cache show prometheus prometheus-alertmanager >/dev/null 2>&1 || as_root apt-get update -qq
  tmp="$(mktemp -d)" && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus prometheus-alertmanager) \
    || fail "apt-get download prometheus prometheus-alertmanager failed"
  rm -rf "$dir" && mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$tmp"
  PROMETHEUS="$dir/usr/bin/prometheus" ALERTMANAGER="$dir/usr/bin/prometheus-alertmanager"
  [ -x "$PROMETHEUS" ] && [ -x "$ALERTMANAGER" ] || fail "no prometheus or alertmanager binary in Debian's packages"
}

# Debian's Alertmanager loads its default Slack template from the fixed path
# /usr/share/prometheus/alertmanager, where nothing is installed here. A copy
# of the binary gets that string (same length) turned into the relative path
# share/prometheus/alertmanager, and runs in the unpacked usr/ folder: it then
# reads the package's own template. Sets ALERTMANAGER_RUN and ALERTMANAGER_CWD.
relocate_alertmanager() {
  local copy="$DEMO_DIR/tools-relocated/prometheus-alertmanager"
  ALERTMANAGER_CWD="$(dirname "$(dirname "$ALERTMANAGER")")"
  [ -f "$ALERTMANAGER_CWD/share/prometheus/alertmanager/default.tmpl" ] \
    || fail "no default.tmpl in Debian's prometheus-alertmanager package"
  mkdir -p "$(dirname "$copy")"
  python3 - "$ALERTMANAGER" "$copy" <<'PY' || fail "cannot relocate Alertmanager's template path"
import os, re, sys
data = bytearray(open(sys.argv[1], "rb").read())
old = b"/usr/share/prometheus/alertmanager"
new = b"share/prometheus/alertmanager".ljust(len(old), b"/")  # trailing slashes: filepath.Join drops them
hits = [m.start() for m in re.finditer(re.escape(old) + rb"(?!/)", data)]
if len(hits) != 1:
    sys.exit(f"expected the template directory once in {sys.argv[1]}, found it {len(hits)} times")
data[hits[0]:hits[0] + len(old)] = new
open(sys.argv[2], "wb").write(data)
os.chmod(sys.argv[2], 0o755)
PY
  ALERTMANAGER_RUN="$copy"
}

# The configurations, generated from the deployed ones; prints the bounds as
# "NAME SECONDS" lines (scrape + 2 evaluations + the rule's for + group_wait + margin).
# The scrape job is compose's, which must carry the same job name as the
# chart's and as every selector in the rules: one name, or the alerts go silent.
alert_configs() {
  python3 - "$ALERT_DIR" "$ALERT_COMPOSE_PROM" "$ALERT_CHART_PROM" "$ALERT_RULES" "$ALERT_AM_CONFIG" \
    "$BIND_ADDR" "$ALERT_AM_ADDR" "$ALERT_HOOK_URL" "$SCRAPE_SECONDS" "$EVAL_SECONDS" "$ALERT_MARGIN_SECONDS" <<'PY'
import os, re, sys, yaml
out, compose, chart, rules, am, app, am_addr, hook, scrape, evaluation, margin = sys.argv[1:]

def seconds(d):
    return sum(int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", d))

prom = yaml.safe_load(open(compose))
apps = [j for j in prom["scrape_configs"]
        if any(t.startswith("vote-api:") for s in j.get("static_configs", []) for t in s.get("targets", []))]
if len(apps) != 1:
    sys.exit(f"{compose}: expected one scrape job for the vote-api container, found {len(apps)}")
job = apps[0]["job_name"]
# The chart's scrape job: the one discovering the vote-api pods.
chart_jobs = re.findall(r"- job_name: (\S+)\s+metrics_path: \S+\s+dns_sd_configs:\s+- names: \[\"vote-api-pods", open(chart).read())
if chart_jobs != [job]:
    sys.exit(f"{chart} scrapes the vote-api pods as job {chart_jobs}, {compose} as {job!r}: one name, please")
groups = yaml.safe_load(open(rules))["groups"]
selectors = {m for g in groups for r in g["rules"] for m in re.findall(r'job="([^"]*)"', r["expr"])}
if selectors != {job}:
    sys.exit(f"{rules} selects job {sorted(selectors)}, the scrape job is {job!r}")
print(f"job {job}")

app_job = dict(apps[0], static_configs=[{"targets": [app]}])
config = {
    "global": {"scrape_interval": f"{scrape}s", "evaluation_interval": f"{evaluation}s",
               "external_labels": {"environment": "rehearsal"}},
    "rule_files": [os.path.abspath(rules)],
    "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_addr]}]}]},
    "scrape_configs": [app_job],
}
with open(f"{out}/prometheus.yml", "w") as f:
    f.write(f"# Generated by deploy/demo/alert-path.sh from {compose} (job {job!r}).\n")
    yaml.safe_dump(config, f, sort_keys=False)

# Alertmanager: the chart's file as it is, but the Slack webhook is the receiver.
text = open(am).read()
slack_file = re.search(r"api_url_file: (\S+)", text)
if not slack_file:
    sys.exit(f"{am}: no api_url_file")
open(f"{out}/slack-webhook-url", "w").write(hook)
with open(f"{out}/alertmanager.yml", "w") as f:
    f.write(text.replace(slack_file.group(1), f"{out}/slack-webhook-url"))

group_wait = seconds(yaml.safe_load(text)["route"]["group_wait"])
for g in groups:
    for r in g["rules"]:
        if "alert" in r:
            bound = int(scrape) + 2 * int(evaluation) + seconds(r.get("for", "0s")) + group_wait + int(margin)
            print(f"bound {r['alert']} {bound:g} {r.get('for', '0s')} {group_wait:g}")
PY
}

# A stand-in for Slack: every POST it receives, one JSON line with the time.
alert_receiver() {
  # exec: the background job is the receiver itself, so killing its pid stops it.
  exec python3 -u - "$ALERT_DIR/slack.jsonl" "$ALERT_DIR/receiver.port" <<'PY'
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
log, port_file = sys.argv[1:]
class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        n = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = self.rfile.read(n)
        with open(log, "a") as f:
            f.write(json.dumps({"received": time.time(), "path": self.path, "body": json.loads(body or b"null")}) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = HTTPServer(("127.0.0.1", 0), Hook)
open(port_file + ".tmp", "w").write(str(server.server_address[1]))
__import__("os").rename(port_file + ".tmp", port_file)
server.serve_forever()
PY
}

# start_tool NAME VAR CMD...: CMD on a free_port ({PORT} in its arguments)
# until /-/ready answers; VAR gets the address.
start_tool() {
  local name="$1" var="$2" log="$ALERT_DIR/$1.log"
  shift 2
  if ! serve_on_port "$log" 10 /-/ready "$(free_port)" "$@" 2> >(indent); then
    [ -n "$SERVED_PID" ] && ALERT_PIDS+=("$SERVED_PID")
    tail -n 5 "$log"
    fail "$name: $SERVED_ERROR (log: ${log#"$ROOT"/})"
  fi
  ALERT_PIDS+=("$SERVED_PID")
  printf -v "$var" '127.0.0.1:%s' "$SERVED_PORT"
}

alert_path_start() {
  local line
  command -v python3 >/dev/null || ensure_packages python3
  python3 -c 'import yaml' 2>/dev/null || ensure_packages python3-yaml
  find_alert_tools
  rm -rf "$ALERT_DIR" && mkdir -p "$ALERT_DIR"

  alert_receiver >"$ALERT_DIR/receiver.log" 2>&1 &
  ALERT_PIDS+=("$!")
  for _ in $(seq 1 100); do [ -s "$ALERT_DIR/receiver.port" ] && break; sleep 0.05; done
  [ -s "$ALERT_DIR/receiver.port" ] || fail "the Slack stand-in did not start (${ALERT_DIR#"$ROOT"/}/receiver.log)"
  ALERT_HOOK_URL="http://127.0.0.1:$(cat "$ALERT_DIR/receiver.port")/slack"

  # Alertmanager first: its address goes into prometheus.yml.
  ALERT_AM_ADDR="127.0.0.1:0" alert_configs >/dev/null || fail "cannot generate the alert path's configuration"
  relocate_alertmanager
  start_tool alertmanager ALERT_AM_ADDR env -C "$ALERTMANAGER_CWD" "$ALERTMANAGER_RUN" \
    --config.file="$ALERT_DIR/alertmanager.yml" --storage.path="$ALERT_DIR/am-data" \
    --web.listen-address="127.0.0.1:{PORT}" --cluster.listen-address=
  ALERT_FACTS="$(alert_configs)" || fail "cannot generate the alert path's configuration"
  "$PROMTOOL" check config "$ALERT_DIR/prometheus.yml" >"$ALERT_DIR/promtool-check.log" 2>&1 \
    || { cat "$ALERT_DIR/promtool-check.log"; fail "promtool rejects the generated prometheus.yml"; }
  start_tool prometheus ALERT_PROM_ADDR "$PROMETHEUS" \
    --config.file="$ALERT_DIR/prometheus.yml" --storage.tsdb.path="$ALERT_DIR/prom-data" \
    --web.listen-address="127.0.0.1:{PORT}"
  ALERT_JOB="$(awk '$1 == "job" { print $2 }' <<<"$ALERT_FACTS")"
  ok "one scrape job name, $ALERT_JOB, in compose's prometheus.yml, the chart's and every rule selector"
  # The baseline: increase() needs a sample of the counter from before the first 503.
  for _ in $(seq 1 200); do
    line="$(curl -fs --max-time 1 "http://$ALERT_PROM_ADDR/api/v1/query" \
      --data-urlencode "query=referral_cache_exhausted_total{job=\"$ALERT_JOB\"} and on(instance) up{job=\"$ALERT_JOB\"} == 1" \
      | jq -r '.data.result | length' 2>/dev/null || true)"
    [ "$line" = 1 ] && break
    sleep 0.1
  done
  [ "$line" = 1 ] || fail "Prometheus does not see $BIND_ADDR up with referral_cache_exhausted_total"
  ok "Prometheus $("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 { print $3 }') scrapes $BIND_ADDR every ${SCRAPE_SECONDS}s with the chart's rules; Alertmanager $("$ALERTMANAGER" --version 2>&1 | awk 'NR == 1 { print $3 }') with the chart's config sends Slack messages to $ALERT_HOOK_URL"
}

# alert_expect ALERT T0 [INSTANCE]: waits (up to the bound plus 10 s, to report
# how late it was) for the first Slack message announcing ALERT firing that
# arrived after T0 (an $EPOCHREALTIME), checks its labels and annotations, and
# fails if it came later than the bound. ALERT_SECONDS: the time since T0.
alert_expect() {
  local alert="$1" t0="$2" instance="${3:-$BIND_ADDR}" bound facts msg=""
  facts="$(awk -v a="$alert" '$1 == "bound" && $2 == a' <<<"$ALERT_FACTS")"
  [ -n "$facts" ] || fail "no rule $alert in $ALERT_RULES"
  bound="$(awk '{ print $3 }' <<<"$facts")"
  for _ in $(seq 1 $(((bound + 10) * 10))); do
    msg="$(jq -c --arg a "$alert" --argjson t0 "$t0" \
      'select(.received > $t0 and (.body.attachments[0].title | startswith("[FIRING") and contains("] " + $a + " ")))' \
      "$ALERT_DIR/slack.jsonl" 2>/dev/null | head -n 1 || true)"
    [ -n "$msg" ] && break
    sleep 0.1
  done
  [ -n "$msg" ] || fail "$alert did not reach the Slack stand-in within $((bound + 10)) s (${ALERT_DIR#"$ROOT"/}/: prometheus.log, alertmanager.log, slack.jsonl)"
  ALERT_SECONDS="$(jq -r --argjson t0 "$t0" '.received - $t0 | . * 100 | round / 100' <<<"$msg")"
  local text title want
  title="$(jq -r '.body.attachments[0].title' <<<"$msg")"
  text="$(jq -r '.body.attachments[0].text' <<<"$msg")"
  printf '%s\n%s\n' "$title" "$text" | indent
  [ "$(jq -r '.body.channel' <<<"$msg")" = "#sre-alerts" ] || fail "the Slack message goes to $(jq -r .body.channel <<<"$msg"), not #sre-alerts"
  for want in "\`alertname=$alert\`" "\`job=$ALERT_JOB\`" "\`instance=$instance\`" "\`severity=critical\`" \
    "Runbook: docs/runbook.md, section 'Runbook: alerts' > $alert"; do
    grep -qF -- "$want" <<<"$text" || fail "the Slack message lacks $want"
  done
  # The annotations as the rules state them, the instance filled in.
  python3 - "$ALERT_RULES" "$alert" "$instance" "$text" <<'PY' || fail "the Slack message lacks $alert's summary or description"
import sys, yaml
rules, alert, instance, text = sys.argv[1:]
rule = next(r for g in yaml.safe_load(open(rules))["groups"] for r in g["rules"] if r.get("alert") == alert)
for key in ("summary", "description"):
    want = rule["annotations"][key].replace("{{ $labels.instance }}", instance)
    if "{{" not in want and want.strip() not in text:
        sys.exit(f"{key} missing: {want}")
PY
  awk -v s="$ALERT_SECONDS" -v b="$bound" 'BEGIN { exit !(s <= b) }' \
    || fail "$alert reached Slack after $ALERT_SECONDS s: the bound is $bound s ($(awk '{ printf "scrape %ss + 2 evaluations of %ss + for %s + group_wait %ss + margin %ss", s, e, $4, $5, m }' s="$SCRAPE_SECONDS" e="$EVAL_SECONDS" m="$ALERT_MARGIN_SECONDS" <<<"$facts"))"
  ALERT_BOUND="$bound"
}

# first_503 LOG SINCE: the time (as $EPOCHREALTIME) of the first vote the app
# logged with a 503 at or after SINCE; SINCE itself when the log shows none.
first_503() {
  local at
  at="$(awk '/path=\/vote status=503/ { print $1 }' "$1" | while read -r stamp; do
    date -d "$stamp" +%s.%N 2>/dev/null
  done | awk -v since="$2" '$1 >= since { print; exit }')"
  [ -n "$at" ] || note "no 503 in $1 since the loop started: timing from the loop's start" >&2
  echo "${at:-$2}"
}

alert_path_stop() {
  local pid
  for pid in "${ALERT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  ALERT_PIDS=()
}
