#!/usr/bin/env python3
"""The driver of scripts/chaos (run it through scripts/chaos, which starts the cluster).

    chaos.py ROOT CLUSTER_DIR SECONDS VOTERS SCREENS [FAULTS]

FAULTS: a comma-separated choice of idle, upgrade, kill, redis, pg-restart,
pg-hang (default: all, in that order).

Voters post votes through nginx and retry a failed one with the same
Idempotency-Key, as a phone's "Try again" does; screens read /stream through
nginx and reconnect as assets/results.js does (EventSource's `retry:`, and
after an HTTP error its HEAD /stream check honouring Retry-After). Meanwhile
the faults of SPEC §11.2 run one after another. Then the checks; the exit
status is 1 when one fails. Python's standard library only.
"""
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

ROOT, CLUSTER_DIR, SECONDS, VOTERS, SCREENS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ALL_FAULTS = ["idle", "upgrade", "kill", "redis", "pg-restart", "pg-hang"]
WANTED = ALL_FAULTS if len(sys.argv) < 7 or sys.argv[6] == "all" else sys.argv[6].split(",")
if set(WANTED) - set(ALL_FAULTS):
    sys.exit(f"unknown faults {sorted(set(WANTED) - set(ALL_FAULTS))}: choose from {', '.join(ALL_FAULTS)}")
CHOICES = ["print", "stare", "ai", "revert", "restart"]
# A phone gives up (and the run fails) after this long without an answer.
GIVE_UP_SECONDS = 30.0
# One request may take this long before the voter tries again.
REQUEST_TIMEOUT = 10.0
# Backoff between a voter's tries, doubling up to the maximum.
RETRY_MIN, RETRY_MAX = 0.2, 2.0
# The pause between two faults, while votes flow.
BETWEEN_FAULTS = 2.0
# PostgreSQL, Redis and every replica must agree within this long of the last vote.
AGREE_SECONDS = 2.0
# results.js: reconnect backoff after the browser gave up, the longest
# Retry-After it honours, and the silence after which it reconnects.
RETRY_MIN_MS, RETRY_MAX_MS, RETRY_AFTER_MAX_MS, SILENCE_MS = 1000, 15000, 60000, 20000
# EventSource's reconnection time before the server sends `retry:`.
DEFAULT_RETRY_MS = 3000
NO_ANSWER = "no answer"
# Longest SSE line read (a votes frame is about 400 bytes).
MAX_LINE = 64 * 1024
RUN = f"{int(time.time()) % 100000:05d}{random.randrange(1000):03d}"
T0 = time.monotonic()
# Set when the voters (and the faults) stop; screens watch until SCREENS_STOP.
STOP = threading.Event()
SCREENS_STOP = threading.Event()
# Set while the voters pause for an idle gap.
IDLE = threading.Event()
LOCK = threading.Lock()


def now():
    return time.monotonic() - T0


def say(msg):
    print(f"{now():7.1f}s {msg}", flush=True)


def state(name):
    with open(os.path.join(CLUSTER_DIR, "state", name)) as f:
        return f.read().strip()


def replica_file(i, name):
    with open(os.path.join(CLUSTER_DIR, f"replica-{i}", name)) as f:
        return f.read().strip()


URL = state("url")
HOST, PORT = URL.split("//")[1].split(":")
PORT = int(PORT)
REPLICAS = int(state("replicas"))


def cluster(cmd):
    """Runs CMD in bash with scripts/lib/cluster.sh loaded on this cluster; its stdout."""
    script = ('set -euo pipefail; source "$0/scripts/lib/stack.sh"; source "$0/scripts/lib/cluster.sh"; '
              'cluster_load "$1"; ' + cmd)
    out = subprocess.run(["bash", "-c", script, ROOT, CLUSTER_DIR], capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {out.returncode}: {out.stderr.strip()[-800:]}")
    return out.stdout.strip()


def psql(sql):
    out = subprocess.run(
        ["psql", "-X", "-At", "-F", ",", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", state("pg_port"),
         "-U", "postgres", "-d", "conference", "-c", sql],
        capture_output=True, text=True, timeout=30, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
    if out.returncode != 0:
        raise RuntimeError(f"psql: {out.stderr.strip()}")
    return [line.split(",") for line in out.stdout.splitlines() if line]


def pg_counts():
    counts = dict.fromkeys(CHOICES, 0)
    for choice, n in psql("SELECT choice, count(*) FROM votes GROUP BY choice"):
        counts[choice] = int(n)
    return counts


def redis_counts():
    """The counts Redis holds: the sum of its copies of PostgreSQL's totals, one
    per shard, in the hash vote-api:copies as `version key=n key=n ...`
    (src/live.rs, src/totals.rs). The one place that knows the key layout."""
    out = subprocess.run(["redis-cli", "-p", state("redis_port"), "--raw", "HGETALL", "vote-api:copies"],
                         capture_output=True, text=True, timeout=5)
    if out.returncode != 0:
        raise RuntimeError(f"redis-cli: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    totals = {c: 0 for c in CHOICES}
    for copy in lines[1::2]:
        for part in copy.split()[1:]:
            key, _, n = part.partition("=")
            if key in totals:
                totals[key] += int(n)
    return totals


def http_get(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 20)
    finally:
        conn.close()


def replica_counts(i):
    status, body = http_get(int(replica_file(i, "port")), "/votes")
    if status != 200:
        raise RuntimeError(f"replica {i} /votes: {status}")
    return {c: int(v["count"]) for c, v in json.loads(body).items()}


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


# ---- voters ----------------------------------------------------------------------
class Voter(threading.Thread):
    def __init__(self, n):
        super().__init__(daemon=True)
        self.n = n
        self.rng = random.Random(n)
        self.conn = None
        self.sent = {}  # key -> choice, every key sent at least once
        self.acked = {}  # key -> choice, answered 200
        self.ack_times = []  # seconds from the first try to the 200
        self.first_try = 0
        self.votes = 0
        self.gave_up = []
        self.unexpected = []  # (key, status, body)
        self.after_idle = []  # (status of the first try after an idle gap)
        self.last_ack = 0.0
        self.retried_statuses = {}

    def post(self, key, choice):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, PORT, timeout=REQUEST_TIMEOUT)
        try:
            self.conn.request("POST", "/vote", body=json.dumps({"choice": choice}),
                              headers={"Content-Type": "application/json", "Idempotency-Key": key})
            resp = self.conn.getresponse()
            body = resp.read(1 << 16)
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, body
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = None
            return 0, str(e).encode()

    def run(self):
        i = 0
        idle_before = False
        while not STOP.is_set():
            if IDLE.is_set():
                while IDLE.is_set() and not STOP.is_set():
                    time.sleep(0.05)
                idle_before = True
                continue
            i += 1
            key = f"chaos-{RUN}-{self.n}-{i}"
            choice = self.rng.choice(CHOICES)
            self.votes += 1
            start = time.monotonic()
            wait = RETRY_MIN
            tries = 0
            while True:
                tries += 1
                self.sent[key] = choice
                status, body = self.post(key, choice)
                if idle_before and tries == 1:
                    self.after_idle.append((status, body[:200]))
                    idle_before = False
                if status == 200:
                    t = time.monotonic()
                    self.acked[key] = choice
                    self.ack_times.append(t - start)
                    self.last_ack = t - T0
                    self.first_try += tries == 1
                    break
                if status not in (0, 502, 503, 504):
                    self.unexpected.append((key, status, body[:200]))
                    break
                self.retried_statuses[status] = self.retried_statuses.get(status, 0) + 1
                if time.monotonic() - start + wait > GIVE_UP_SECONDS:
                    self.gave_up.append((key, status, body[:200]))
                    break
                time.sleep(wait * (1 + self.rng.random() * 0.5))
                wait = min(wait * 2, RETRY_MAX)
            time.sleep(self.rng.uniform(0.005, 0.03))


# ---- screens ----------------------------------------------------------------------
class Screen(threading.Thread):
    """A projector's results page: EventSource plus results.js's own retries."""

    def __init__(self, n):
        super().__init__(daemon=True)
        self.n = n
        self.rng = random.Random(1000 + n)
        self.total = None
        self.frames = 0
        self.drops = 0
        self.reconnects = []  # seconds from a drop to the first votes frame after it
        self.dropped_at = None
        self.connected = False
        self.refusals = {}
        self.sock = None

    def stream(self):
        """One EventSource connection. Returns 'ok' after a stream that was open,
        'http' after an HTTP error (EventSource gives up), 'net' after a network error."""
        conn = http.client.HTTPConnection(HOST, PORT, timeout=SILENCE_MS / 1000)
        try:
            conn.request("GET", "/stream", headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"})
            resp = conn.getresponse()
            if resp.status != 200 or not resp.getheader("Content-Type", "").startswith("text/event-stream"):
                self.refusals[resp.status] = self.refusals.get(resp.status, 0) + 1
                resp.read(1 << 16)
                return "http"
            self.sock = conn
            event, data = "message", []
            while not SCREENS_STOP.is_set():
                line = resp.readline(MAX_LINE)
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if event == "votes" and data:
                        self.frame(json.loads("\n".join(data)))
                    event, data = "message", []
                elif line.startswith("retry:"):
                    if line[6:].strip().isdigit():
                        self.retry_ms = int(line[6:].strip())
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
            return "ok"
        except (OSError, http.client.HTTPException, ValueError):
            return "net"
        finally:
            self.connected = False
            self.sock = None
            conn.close()

    def frame(self, counts):
        t = now()
        with LOCK:
            self.total = sum(v["count"] for v in counts.values())
            self.frames += 1
            self.connected = True
            if self.dropped_at is not None:
                self.reconnects.append(t - self.dropped_at)
                self.dropped_at = None

    def run(self):
        self.retry_ms = DEFAULT_RETRY_MS
        backoff = RETRY_MIN_MS
        while not SCREENS_STOP.is_set():
            frames = self.frames
            how = self.stream()
            if SCREENS_STOP.is_set():
                break
            if self.frames > frames:
                backoff = RETRY_MIN_MS
            if self.dropped_at is None and self.frames > 0:
                self.dropped_at = now()
                self.drops += 1
            if how in ("ok", "net"):
                # EventSource reconnects by itself after `retry` milliseconds.
                SCREENS_STOP.wait(self.retry_ms / 1000)
                continue
            # An HTTP error: EventSource is CLOSED; results.js asks HEAD /stream.
            wait = backoff
            backoff = min(backoff * 2, RETRY_MAX_MS)
            try:
                conn = http.client.HTTPConnection(HOST, PORT, timeout=5)
                conn.request("HEAD", "/stream")
                resp = conn.getresponse()
                after = resp.getheader("Retry-After", "")
                if resp.status == 503 and after.isdigit() and int(after) > 0:
                    wait = min(int(after) * 1000, RETRY_AFTER_MAX_MS)
                conn.close()
            except (OSError, http.client.HTTPException):
                pass
            SCREENS_STOP.wait(wait * (1 + self.rng.random() * 0.5) / 1000)


# ---- faults -------------------------------------------------------------------------
FAULTS = []  # (name, {figure: seconds})


def fault(name, **figures):
    FAULTS.append((name, figures))
    say(f"fault: {name}: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in figures.items()))


def all_ready(path, limit=60.0):
    """Seconds until every replica answers PATH 200."""
    t = time.monotonic()
    while time.monotonic() - t < limit:
        ok = 0
        for i in range(1, REPLICAS + 1):
            try:
                ok += http_get(int(replica_file(i, "port")), path, timeout=1)[0] == 200
            except OSError:
                pass
        if ok == REPLICAS:
            return time.monotonic() - t
        time.sleep(0.05)
    raise RuntimeError(f"not every replica answered {path} within {limit} s")


def timed(cmd):
    t = time.monotonic()
    out = cluster(cmd)
    return time.monotonic() - t, out


def restart_replica(i, version, sig):
    out = cluster(f'replica_stop {i} {sig}; echo "$REPLICA_SECONDS"; replica_start {i} {version}; echo "$REPLICA_SECONDS"')
    stopped, started = out.split()[-2:]
    return float(stopped), float(started)


def postgres_pids():
    with open(os.path.join(CLUSTER_DIR, "pg", "data", "postmaster.pid")) as f:
        master = int(f.readline())
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return master, kids


def app_idle_timeout():
    """Seconds after which the app closes an idle connection (hyper's header read timeout)."""
    text = open(os.path.join(ROOT, "src/http/mod.rs")).read()
    m = re.search(r"HEADER_READ_TIMEOUT: Duration = Duration::from_secs\((\d+)\)", text)
    if not m:
        raise RuntimeError("src/http/mod.rs: no HEADER_READ_TIMEOUT")
    return int(m.group(1))


def nginx_keepalive_timeout():
    """nginx's idle timeout for upstream connections, as generated."""
    text = open(os.path.join(CLUSTER_DIR, "nginx", "nginx.conf")).read()
    m = re.search(r"upstream vote_api \{[^}]*?keepalive_timeout (\d+)s;", text)
    if not m:
        raise RuntimeError("nginx.conf: no keepalive_timeout in the upstream block")
    return int(m.group(1))


def upstream_connections():
    """Established TCP connections to the replicas' ports (nginx's side of each)."""
    ports = {int(replica_file(i, "port")) for i in range(1, REPLICAS + 1)}
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].split(":")[1], 16) in ports:
                n += 1
    return n


IDLE_CHECK = {}


def run_faults(screens):
    rng = random.Random()
    STOP.wait(BETWEEN_FAULTS)
    # First, while every replica still holds the upstream connections nginx opened to it.
    if "idle" in WANTED:
        idle_gap(screens)
    if "upgrade" in WANTED:
        # A rolling upgrade, one replica at a time: SIGTERM, wait for the exit, start the new version.
        for i in range(1, REPLICAS + 1):
            stopped, started = restart_replica(i, "chaos-v2", "TERM")
            fault(f"rolling upgrade, replica {i} → chaos-v2", time_to_exit=stopped, time_to_serve_again=started)
            STOP.wait(0.5)
        STOP.wait(BETWEEN_FAULTS)
    if "kill" in WANTED:
        victim = rng.randrange(1, REPLICAS + 1)
        stopped, started = restart_replica(victim, "chaos-v2", "KILL")
        fault(f"SIGKILL replica {victim}, restart", time_to_exit=stopped, time_to_serve_again=started)
        STOP.wait(BETWEEN_FAULTS)
    if "redis" in WANTED:
        stopped, _ = timed('stop_redis "$CLUSTER_DIR/redis"')
        started, _ = timed('start_redis "$CLUSTER_DIR/redis" "$(cluster_get redis_port)"')
        fault("Redis restart (its data lost)", time_to_exit=stopped, time_to_serve_again=started + all_ready("/ready"))
        STOP.wait(BETWEEN_FAULTS)
    if "pg-restart" in WANTED:
        stopped, _ = timed('stop_postgres "$CLUSTER_DIR/pg"')
        started, _ = timed('start_postgres "$CLUSTER_DIR/pg" "$(cluster_get pg_port)"')
        fault("PostgreSQL restart", time_to_exit=stopped, time_to_serve_again=started + all_ready("/ready/votes"))
        STOP.wait(BETWEEN_FAULTS)
    if "pg-hang" in WANTED:
        master, kids = postgres_pids()
        for pid in [master] + kids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(5)
        finally:
            for pid in kids + [master]:
                os.kill(pid, signal.SIGCONT)
        fault(f"PostgreSQL hang 5 s (SIGSTOP/SIGCONT of {1 + len(kids)} processes)", time_to_serve_again=all_ready("/ready/votes"))
        # Votes keep flowing after the last fault, whatever SECONDS says.
        STOP.wait(BETWEEN_FAULTS)


def idle_gap(screens):
    """The voters fall silent past the app's idle timeout. Half-way between
    nginx's keep-alive timeout and the app's, nginx must have closed every idle
    connection to the replicas (only the screens' streams stay); after the gap,
    each voter's first vote must answer 200."""
    idle, keepalive = app_idle_timeout(), nginx_keepalive_timeout()
    gap = idle + 1.5
    # Before the app's timeout even when nginx's is not.
    check_at = (min(keepalive, idle - 1) + idle) / 2
    IDLE.set()
    time.sleep(check_at)
    IDLE_CHECK.update(at=check_at, upstream=upstream_connections(), streams=sum(s.connected for s in screens))
    time.sleep(gap - check_at)
    IDLE.clear()
    fault(f"idle gap of {gap:.1f} s (app idle timeout {idle} s + 1.5 s; nginx keep-alive {keepalive} s), then votes")
    STOP.wait(BETWEEN_FAULTS)


# ---- the checks ---------------------------------------------------------------------
def main():
    say(f"chaos {RUN}: {VOTERS} voters and {SCREENS} screens through {URL}, {REPLICAS} replicas, at least {SECONDS} s;"
        f" faults: {', '.join(WANTED)}")
    screens = [Screen(n) for n in range(SCREENS)]
    for s in screens:
        s.start()
    deadline = time.monotonic() + 30
    while not all(s.frames for s in screens):
        if time.monotonic() > deadline:
            print("screens without a first frame after 30 s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    voters = [Voter(n) for n in range(VOTERS)]
    start = now()
    for v in voters:
        v.start()
    failures = []
    try:
        run_faults(screens)
    except Exception as e:  # a fault that could not be run fails the run, after the cleanup below
        failures.append(f"a fault could not be run: {e}")
    while now() - start < SECONDS and not failures:
        time.sleep(0.1)
    stopped_voting = now()
    STOP.set()
    for v in voters:
        v.join(GIVE_UP_SECONDS + REQUEST_TIMEOUT + 5)
    voting = stopped_voting - start
    last_vote = max((v.last_ack for v in voters), default=now())

    # Every acknowledged key stored exactly once; no row no client sent.
    sent, acked = {}, {}
    for v in voters:
        sent.update(v.sent)
        acked.update(v.acked)
    rows = psql("SELECT coalesce(idempotency_key, ''), choice FROM votes")
    stored = {}
    for key, choice in rows:
        stored.setdefault(key, []).append(choice)
    missing = [k for k in acked if k not in stored]
    twice = [k for k, c in stored.items() if len(c) > 1]
    wrong = [k for k in acked if k in stored and stored[k] != [acked[k]]]
    foreign = [k or "(no key)" for k in stored if k not in sent]
    if missing:
        failures.append(f"{len(missing)} acknowledged votes are not stored, e.g. {missing[:3]}")
    if twice:
        failures.append(f"{len(twice)} keys are stored more than once, e.g. {twice[:3]}")
    if wrong:
        failures.append(f"{len(wrong)} keys are stored with another choice, e.g. {wrong[:3]}")
    if foreign:
        failures.append(f"{len(foreign)} rows no client sent, e.g. {foreign[:3]}")
    unacked_stored = sum(1 for k in sent if k not in acked and k in stored)

    # PostgreSQL, Redis and every replica agree within AGREE_SECONDS of the last vote.
    agreed_at, views = None, {}
    while True:
        t = now()
        views = {"postgresql": pg_counts()}
        try:
            views["redis"] = redis_counts()
        except RuntimeError as e:
            views["redis"] = str(e)
        for i in range(1, REPLICAS + 1):
            try:
                views[f"replica {i}"] = replica_counts(i)
            except (OSError, RuntimeError, ValueError) as e:
                views[f"replica {i}"] = str(e)
        if all(v == views["postgresql"] for v in views.values()):
            agreed_at = t - last_vote
            break
        if t - last_vote > AGREE_SECONDS + 8:
            break
        time.sleep(0.05)
    pg_total = sum(views["postgresql"].values())
    if agreed_at is None or agreed_at > AGREE_SECONDS:
        failures.append(f"PostgreSQL, Redis and the replicas did not agree within {AGREE_SECONDS} s of the last vote"
                        + (f" (they did after {agreed_at:.2f} s)" if agreed_at is not None else "")
                        + ": " + "; ".join(f"{k} {json.dumps(v) if isinstance(v, dict) else v}" for k, v in views.items()))

    # Every screen reconnected and shows the final total.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(s.total == pg_total and s.connected for s in screens):
        time.sleep(0.05)
    SCREENS_STOP.set()
    behind = [(s.n, s.total) for s in screens if s.total != pg_total or not s.connected]
    never = [s.n for s in screens if s.drops == 0]
    if behind:
        failures.append(f"{len(behind)} screens do not show the final total {pg_total} (screen, total): {behind[:5]}")
    if never and "upgrade" in WANTED:
        failures.append(f"{len(never)} screens were never disconnected (expected by the rolling upgrade): {never[:5]}")

    gave_up = [g for v in voters for g in v.gave_up]
    unexpected = [u for v in voters for u in v.unexpected]
    after_idle = [a for v in voters for a in v.after_idle]
    if gave_up:
        failures.append(f"{len(gave_up)} votes given up after {GIVE_UP_SECONDS:.0f} s of retries, e.g. {gave_up[:2]}")
    if unexpected:
        failures.append(f"{len(unexpected)} votes answered neither 200 nor a retryable error, e.g. {unexpected[:2]}")
    if IDLE_CHECK and IDLE_CHECK["upstream"] != IDLE_CHECK["streams"]:
        failures.append(f"{IDLE_CHECK['at']:.1f} s into the silence nginx held {IDLE_CHECK['upstream']} connections to the replicas"
                        f" for {IDLE_CHECK['streams']} screens' streams: idle ones it keeps past the app's idle timeout"
                        " get a POST the app has just closed (502)")
    not_ok_after_idle = [a for a in after_idle if a[0] != 200]
    if not after_idle and "idle" in WANTED:
        failures.append("no vote was sent right after the idle gap")
    if not_ok_after_idle:
        failures.append(f"{len(not_ok_after_idle)} of {len(after_idle)} first votes after the idle gap were not 200: {not_ok_after_idle[:3]}")

    votes = sum(v.votes for v in voters)
    acks = [t for v in voters for t in v.ack_times]
    reconnects = [r for s in screens for r in s.reconnects]
    retried = {}
    for v in voters:
        for k, n in v.retried_statuses.items():
            retried[k] = retried.get(k, 0) + n
    refusals = {}
    for s in screens:
        for k, n in s.refusals.items():
            refusals[k] = refusals.get(k, 0) + n
    print()
    print("figures")
    print(f"  votes acknowledged      {len(acked)} of {votes} in {voting:.1f} s: {len(acked) / voting:.1f}/s")
    print(f"  first-try success       {sum(v.first_try for v in voters) / max(votes, 1) * 100:.2f} %"
          f" (retried answers: {', '.join(f'{k or NO_ANSWER}×{n}' for k, n in sorted(retried.items())) or 'none'})")
    print(f"  time to acknowledgement p50 {pct(acks, 50) * 1000:.0f} ms, p99 {pct(acks, 99) * 1000:.0f} ms, max {max(acks, default=0) * 1000:.0f} ms")
    print(f"  screens                 {SCREENS}: {len(reconnects)} reconnects, p99 {pct(reconnects, 99):.2f} s, max {max(reconnects, default=0):.2f} s"
          f" (HTTP refusals on reconnect: {', '.join(f'{k}×{n}' for k, n in sorted(refusals.items())) or 'none'})")
    print(f"  first votes after the idle gap: {sum(a[0] == 200 for a in after_idle)} of {len(after_idle)} answered 200 at the first try;"
          f" {IDLE_CHECK.get('at', 0):.1f} s into it nginx held {IDLE_CHECK.get('upstream')} upstream connections"
          f" for {IDLE_CHECK.get('streams')} streams")
    print(f"  agreement               " + (f"{agreed_at:.2f} s after the last vote" if agreed_at is not None else "none")
          + f" (total {pg_total}; sent but unacknowledged and stored: {unacked_stored})")
    for name, figures in FAULTS:
        print(f"  {name}: " + (", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in figures.items()) or "done"))
    print()
    if failures:
        for f in failures:
            print(f"FAIL {f}")
        return 1
    print("chaos: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
