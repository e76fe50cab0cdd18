#!/usr/bin/env python3
"""Policy checks on one `helm template` output of the conference-app chart.

kubernetes-validate proves each object matches the Kubernetes schema; this proves
the objects fit together and hold what the chart promises: every pod non-root,
read-only, capabilities dropped, seccomp RuntimeDefault, requests and limits;
no service-account token where none is needed; every referenced Secret,
ConfigMap, Service and port exists; vote-api probes /health and /ready/votes on
PROBE_ADDR's port, which no Service exposes; the
ingress keeps SSE unbuffered; the rule file in the ConfigMap is byte-for-byte
the canonical one; /metrics is on its own port, which the Ingress never routes
and only Prometheus may reach; vote-api connects to PostgreSQL as its own
non-superuser role; Redis has a password that REDIS_URL carries; the Grafana
dashboard's ConfigMap carries the sidecar's label and the canonical JSON; Prometheus
keeps the SLO's 30 days within a size below its volume. It also writes the rendered Prometheus and Alertmanager
configurations to --extract-dir so promtool and amtool can check them.

Usage: check_manifests.py RENDERED.yaml --chart DIR --extract-dir DIR
                          [--expect FEATURE ...]
FEATURE is one of: pdb tls redis-auth ingress networkpolicy prometheus
alertmanager seed grafana-dashboard. A feature not listed must be absent.
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

FEATURES = ("pdb", "tls", "redis-auth", "ingress", "networkpolicy", "prometheus", "alertmanager", "seed", "grafana-dashboard")
# The votes' SLO window (docs/observability.md): Prometheus must keep at least this long.
SLO_WINDOW_SECONDS = 30 * 86400
# No pod of the chart talks to the Kubernetes API.
TOKEN_ALLOWED: set = set()


def to_bytes(quantity, units):
    """'3GB' or '4Gi' as a number of bytes, with the unit table given."""
    number = re.match(r"[\d.]+", quantity).group(0)
    return float(number) * units[quantity[len(number):]]


class Checker:
    def __init__(self, path):
        self.path = path
        self.errors = []
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        self.objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        if len(self.objects) != len(docs):
            self.fail("two objects share a kind and name")

    def fail(self, message):
        self.errors.append(message)

    def of_kind(self, kind):
        return {name: obj for (k, name), obj in self.objects.items() if k == kind}

    def get(self, kind, name):
        return self.objects.get((kind, name))

    def pod_specs(self):
        """(owner, pod template) of every workload."""
        for kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            for name, obj in self.of_kind(kind).items():
                yield f"{kind}/{name}", obj["spec"]["template"]

    # --- security and resources ------------------------------------------------
    def check_pods(self):
        for owner, template in self.pod_specs():
            spec = template["spec"]
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
                self.fail(f"{owner}: pod must set runAsNonRoot and a non-zero runAsUser")
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                self.fail(f"{owner}: pod seccompProfile must be RuntimeDefault")
            sa = spec.get("serviceAccountName")
            if not sa or not self.get("ServiceAccount", sa):
                self.fail(f"{owner}: service account {sa!r} is not rendered")
            token = spec.get("automountServiceAccountToken")
            if sa in TOKEN_ALLOWED:
                if token is False:
                    self.fail(f"{owner}: needs its token for pod discovery")
            elif token is not False:
                self.fail(f"{owner}: automountServiceAccountToken must be false")
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            containers = spec.get("initContainers", []) + spec["containers"]
            for c in containers:
                where = f"{owner} container {c['name']}"
                csc = c.get("securityContext", {})
                if csc.get("allowPrivilegeEscalation") is not False:
                    self.fail(f"{where}: allowPrivilegeEscalation must be false")
                if csc.get("readOnlyRootFilesystem") is not True:
                    self.fail(f"{where}: readOnlyRootFilesystem must be true")
                if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                    self.fail(f"{where}: capabilities must drop ALL")
                if csc.get("privileged"):
                    self.fail(f"{where}: must not be privileged")
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in res.get(part, {}):
                            self.fail(f"{where}: resources.{part}.{r} missing")
                image = c.get("image", "")
                if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                    self.fail(f"{where}: image {image!r} needs a pinned tag")
                for m in c.get("volumeMounts", []):
                    if m["name"] not in volumes:
                        self.fail(f"{where}: mounts unknown volume {m['name']!r}")
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        self.check_secret_key(where, ref["name"], ref["key"])
            for v in volumes.values():
                if "configMap" in v and not self.get("ConfigMap", v["configMap"]["name"]):
                    self.fail(f"{owner}: ConfigMap {v['configMap']['name']!r} is not rendered")
                if "secret" in v:
                    for item in v["secret"].get("items", []):
                        self.check_secret_key(owner, v["secret"]["secretName"], item["key"])
                if "persistentVolumeClaim" in v and not self.get(
                    "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]
                ):
                    self.fail(f"{owner}: PVC {v['persistentVolumeClaim']['claimName']!r} is not rendered")

    def check_secret_key(self, where, name, key):
        secret = self.get("Secret", name)
        if not secret:
            self.fail(f"{where}: Secret {name!r} is not rendered")
        elif key not in secret.get("stringData", {}) and key not in secret.get("data", {}):
            self.fail(f"{where}: Secret {name!r} has no key {key!r}")

    def check_service_accounts(self):
        for name, sa in self.of_kind("ServiceAccount").items():
            if name not in TOKEN_ALLOWED and sa.get("automountServiceAccountToken") is not False:
                self.fail(f"ServiceAccount/{name}: automountServiceAccountToken must be false")

    # --- wiring ------------------------------------------------------------------
    def pods_matching(self, selector):
        for owner, template in self.pod_specs():
            labels = template["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in selector.items()):
                yield owner, template

    def check_services(self):
        for name, svc in self.of_kind("Service").items():
            pods = list(self.pods_matching(svc["spec"]["selector"]))
            if not pods:
                self.fail(f"Service/{name}: its selector matches no pod")
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                for owner, template in pods:
                    ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
                    if not any(target in (p.get("name"), p["containerPort"]) for p in ports):
                        self.fail(f"Service/{name}: {owner} has no port {target!r}")

    def check_vote_api(self):
        deploy = self.get("Deployment", "vote-api")
        if not deploy:
            self.fail("Deployment/vote-api is missing (mirrord targets deployment/vote-api)")
            return
        pod = deploy["spec"]["template"]["spec"]
        if pod["securityContext"].get("runAsUser") != 1000:
            self.fail("Deployment/vote-api: must run as UID 1000 (the image's user)")
        c = next(c for c in pod["containers"] if c["name"] == "vote-api")
        if not any(p["containerPort"] == 8000 for p in c["ports"]):
            self.fail("Deployment/vote-api: must listen on 8000 (mirrord steals port 8000)")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
            self.fail("Deployment/vote-api: liveness must probe /health")
        # /ready/votes, not /ready: a Redis restart must not take every pod out of service.
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready/votes":
            self.fail("Deployment/vote-api: readiness must probe /ready/votes")
        env = {e["name"] for e in c["env"]}
        for name in ("DATABASE_URL", "REDIS_URL", "BIND_ADDR", "ADMIN_TOKEN", "DB_POOL_SIZE"):
            if name not in env:
                self.fail(f"Deployment/vote-api: env {name} missing")

    def check_metrics_port(self):
        """/metrics lives on METRICS_ADDR's port: Prometheus scrapes it, the
        Ingress and the public Service never route it, and only Prometheus may
        reach it."""
        deploy = self.get("Deployment", "vote-api")
        if not deploy:
            return
        c = next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "vote-api")
        ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
        port = ports.get("metrics")
        env = {e["name"]: e.get("value") for e in c["env"]}
        if port is None or port == 8000:
            self.fail("Deployment/vote-api: needs a container port named metrics, not 8000")
            return
        if env.get("METRICS_ADDR") != f"0.0.0.0:{port}":
            self.fail(f"Deployment/vote-api: METRICS_ADDR must be 0.0.0.0:{port}, found {env.get('METRICS_ADDR')!r}")
        public = self.get("Service", "vote-api")
        if public and any(p.get("targetPort") in ("metrics", port) for p in public["spec"]["ports"]):
            self.fail("Service/vote-api: must not expose the metrics port")
        ing = self.get("Ingress", "vote-api")
        if ing:
            for rule in ing["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    svc = self.get("Service", backend["name"])
                    named = backend["port"].get("name") or backend["port"].get("number")
                    targets = [p.get("targetPort") for p in (svc or {}).get("spec", {}).get("ports", [])
                               if named in (p.get("name"), p["port"])]
                    if path["path"].startswith("/metrics") or any(t in ("metrics", port) for t in targets):
                        self.fail(f"Ingress/vote-api: routes {path['path']} to the metrics port")
        config = self.get("ConfigMap", "prometheus-config")
        if config:
            scrape = yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
            job = next((j for j in scrape if j["job_name"] == "vote-api"), None)
            if not job or any(sd.get("port") != port for sd in job.get("dns_sd_configs", [])):
                self.fail(f"prometheus.yml: job vote-api must scrape port {port}")
        policy = self.get("NetworkPolicy", "vote-api")
        if policy:
            prometheus = self.get("Deployment", "prometheus")
            prom_labels = prometheus["spec"]["template"]["metadata"]["labels"] if prometheus else None
            for rule in policy["spec"].get("ingress", []):
                rule_ports = [p.get("port") for p in rule.get("ports", [])]
                if not rule_ports:
                    self.fail("NetworkPolicy/vote-api: an ingress rule without ports admits the metrics port")
                    continue
                if not any(p in ("metrics", port) for p in rule_ports):
                    continue
                peers = rule.get("from", [])
                only_prometheus = prom_labels and peers and all(
                    set(peer) == {"podSelector"}
                    and all(prom_labels.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
                    for peer in peers
                )
                if not only_prometheus:
                    self.fail("NetworkPolicy/vote-api: the metrics port must admit Prometheus only")

    def check_probe_port(self):
        """The kubelet's probes ask PROBE_ADDR's port, outside the public
        connection budget; no Service or Ingress routes it."""
        deploy = self.get("Deployment", "vote-api")
        if not deploy:
            return
        c = next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "vote-api")
        ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
        port = ports.get("probes")
        env = {e["name"]: e.get("value") for e in c["env"]}
        if port is None or port == 8000:
            self.fail("Deployment/vote-api: needs a container port named probes, not 8000")
            return
        if env.get("PROBE_ADDR") != f"0.0.0.0:{port}":
            self.fail(f"Deployment/vote-api: PROBE_ADDR must be 0.0.0.0:{port}, found {env.get('PROBE_ADDR')!r}")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            target = c.get(kind, {}).get("httpGet", {}).get("port")
            if target not in ("probes", port):
                self.fail(f"Deployment/vote-api: {kind} must ask the probes port, not {target!r}")
        for svc in self.of_kind("Service").values():
            if any(p.get("targetPort") in ("probes", port) for p in svc["spec"]["ports"]):
                self.fail(f"Service/{svc['metadata']['name']}: must not expose the probes port")

    def check_postgres_role(self, chart):
        """vote-api connects as its own role, which the init container keeps
        non-superuser with files/postgresql-app-role.sql."""
        secret = (self.get("Secret", "conference-app-secrets") or {}).get("stringData", {})
        pg = self.get("Deployment", "postgresql")
        if not pg or "DATABASE_URL" not in secret:
            self.fail("Deployment/postgresql and DATABASE_URL in Secret/conference-app-secrets must be rendered")
            return
        env = {e["name"]: e.get("value") for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
        superuser = env.get("POSTGRES_USER")
        app_user = secret["DATABASE_URL"].split("://", 1)[1].split(":", 1)[0]
        if app_user == superuser:
            self.fail(f"Secret: DATABASE_URL connects as the superuser {superuser!r}")
        if secret.get("APP_POSTGRES_PASSWORD") and f":{secret['APP_POSTGRES_PASSWORD']}@" not in secret["DATABASE_URL"]:
            self.fail("Secret: DATABASE_URL does not carry APP_POSTGRES_PASSWORD")
        sql = (self.get("ConfigMap", "postgresql-app-role") or {}).get("data", {}).get("app-role.sql")
        if sql != (chart / "files" / "postgresql-app-role.sql").read_text():
            self.fail("ConfigMap/postgresql-app-role: must hold files/postgresql-app-role.sql")
        elif not all(w in sql for w in ("NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE")):
            self.fail("files/postgresql-app-role.sql: the role must be NOSUPERUSER NOCREATEDB NOCREATEROLE")
        for owner, template in self.pod_specs():
            spec = template["spec"]
            uses_app_url = any(
                e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "DATABASE_URL"
                for c in spec["containers"] for e in c.get("env", [])
            )
            if not uses_app_url:
                continue
            init = [c for c in spec.get("initContainers", []) if c["name"] == "postgresql-app-role"]
            if not init:
                self.fail(f"{owner}: connects as {app_user!r} without the postgresql-app-role init container")
                continue
            args = init[0]["command"]
            if f"role={app_user}" not in args or "-U" not in args or args[args.index("-U") + 1] != superuser:
                self.fail(f"{owner}: postgresql-app-role must run as {superuser!r} for role {app_user!r}")
            for c in spec["containers"]:
                keys = {e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") for e in c.get("env", [])}
                if "POSTGRES_PASSWORD" in keys:
                    self.fail(f"{owner} container {c['name']}: must not see the superuser password")

    def check_ingress(self):
        ing = self.get("Ingress", "vote-api")
        if not ing:
            return
        ann = ing["metadata"].get("annotations", {})
        if ann.get("nginx.ingress.kubernetes.io/proxy-buffering") != "off":
            self.fail("Ingress/vote-api: proxy buffering must be off (SSE)")
        if int(ann.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "0")) < 3600:
            self.fail("Ingress/vote-api: proxy-read-timeout must be at least 3600 (SSE)")
        # ingress-nginx's default is "error timeout"; non_idempotent would send a
        # POST that reached a pod to another one.
        if "non_idempotent" in ann.get("nginx.ingress.kubernetes.io/proxy-next-upstream", "error timeout").split():
            self.fail("Ingress/vote-api: proxy-next-upstream must not retry non_idempotent requests (a vote stored twice)")
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                if not self.get("Service", backend["name"]):
                    self.fail(f"Ingress/vote-api: backend Service {backend['name']!r} is not rendered")
        if ing["spec"].get("tls"):
            if "cert-manager.io/cluster-issuer" not in ann:
                self.fail("Ingress/vote-api: TLS without a cert-manager issuer annotation")

    def check_network_policies(self):
        policies = self.of_kind("NetworkPolicy")
        if not policies:
            return
        for owner, template in self.pod_specs():
            labels = template["metadata"].get("labels", {})
            covering = [
                n
                for n, p in policies.items()
                if all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
            ]
            if not covering:
                self.fail(f"{owner}: no NetworkPolicy selects its pods")
            for n in covering:
                if set(policies[n]["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
                    self.fail(f"NetworkPolicy/{n}: must restrict both Ingress and Egress")

    def check_pdb(self):
        deploy = self.get("Deployment", "vote-api")
        replicas = deploy["spec"]["replicas"] if deploy else 0
        if (replicas > 1) != bool(self.get("PodDisruptionBudget", "vote-api")):
            self.fail(f"PodDisruptionBudget/vote-api must exist exactly when replicas > 1 (replicas={replicas})")

    def check_redis_auth(self):
        secret_obj, redis_obj = self.get("Secret", "conference-app-secrets"), self.get("Deployment", "redis")
        if not secret_obj or not redis_obj:
            self.fail("Secret/conference-app-secrets and Deployment/redis must both be rendered")
            return False
        secret = secret_obj["stringData"]
        redis = redis_obj["spec"]["template"]["spec"]["containers"][0]
        has_password = bool(secret.get("REDIS_PASSWORD"))
        if has_password != (f"requirepass \"{secret.get('REDIS_PASSWORD', '')}\"" in secret.get("redis.conf", "")):
            self.fail("Secret: redis.conf must set requirepass to REDIS_PASSWORD")
        if "/etc/redis/redis.conf" not in redis["args"]:
            self.fail("Deployment/redis: must read /etc/redis/redis.conf (the password's only place)")
        argv = redis["args"] + redis.get("command", [])
        if "--requirepass" in argv or any(
            "$(REDIS_PASSWORD)" in a or (has_password and secret["REDIS_PASSWORD"] in a) for a in argv
        ):
            self.fail("Deployment/redis: the password is on the command line")
        if any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "REDIS_PASSWORD"
               and e["name"] != "REDISCLI_AUTH" for e in redis.get("env", [])):
            self.fail("Deployment/redis: REDIS_PASSWORD only for redis-cli (REDISCLI_AUTH)")
        if has_password and f":{secret['REDIS_PASSWORD']}@" not in secret["REDIS_URL"]:
            self.fail("Secret: REDIS_URL does not carry the Redis password")
        return has_password

    def check_grafana_dashboard(self, chart):
        cm = self.get("ConfigMap", "vote-api-grafana-dashboard")
        if not cm:
            return False
        if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
            self.fail('ConfigMap/vote-api-grafana-dashboard: needs the label grafana_dashboard: "1" (the sidecar\'s)')
        canonical = (chart / "files" / "grafana-dashboard.json").read_text()
        if cm["data"].get("vote-api.json") != canonical:
            self.fail("ConfigMap/vote-api-grafana-dashboard: vote-api.json differs from files/grafana-dashboard.json")
        return True

    def check_prometheus_retention(self):
        deploy = self.get("Deployment", "prometheus")
        if not deploy:
            return
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        args = dict(a.split("=", 1) for a in container["args"] if "=" in a)
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
        time = args.get("--storage.tsdb.retention.time", "0s")
        number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", time).groups()
        if int(number) * units[unit] < SLO_WINDOW_SECONDS:
            self.fail(f"Deployment/prometheus: retention {time} is shorter than the SLO's 30 days")
        size = args.get("--storage.tsdb.retention.size")
        limit = next((v["emptyDir"].get("sizeLimit") for v in deploy["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == "data" and "emptyDir" in v), None)
        if not size or not limit:
            self.fail("Deployment/prometheus: needs --storage.tsdb.retention.size and a sizeLimit on its data volume")
            return
        # Prometheus' units are powers of 2 (1KB = 1024B), as Kubernetes' Ki, Mi, ...
        size_bytes = to_bytes(size, {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40})
        limit_bytes = to_bytes(str(limit), {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})
        if size_bytes > 0.9 * limit_bytes:
            self.fail(f"Deployment/prometheus: retention size {size} leaves under 10 % of its volume ({limit}) free")

    # --- configurations for promtool and amtool ------------------------------------
    def extract(self, chart, out):
        out.mkdir(parents=True, exist_ok=True)
        config = self.get("ConfigMap", "prometheus-config")
        if config:
            (out / "prometheus").mkdir(exist_ok=True)
            (out / "prometheus" / "rules").mkdir(exist_ok=True)
            (out / "prometheus" / "prometheus.yml").write_text(config["data"]["prometheus.yml"])
            rules = self.get("ConfigMap", "prometheus-rules")["data"]
            canonical = (chart / "files" / "prometheus-rules.yml").read_text()
            for name, text in rules.items():
                if text != canonical:
                    self.fail(f"ConfigMap/prometheus-rules: {name} differs from files/prometheus-rules.yml")
                (out / "prometheus" / "rules" / name).write_text(text)
        am = self.get("ConfigMap", "alertmanager-config")
        if am:
            (out / "alertmanager.yml").write_text(am["data"]["alertmanager.yml"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered")
    parser.add_argument("--chart", required=True, type=Path)
    parser.add_argument("--extract-dir", required=True, type=Path)
    parser.add_argument("--expect", action="append", default=[], choices=FEATURES)
    args = parser.parse_args()

    c = Checker(args.rendered)
    c.check_pods()
    c.check_service_accounts()
    c.check_services()
    c.check_vote_api()
    c.check_ingress()
    c.check_metrics_port()
    c.check_probe_port()
    c.check_postgres_role(args.chart)
    c.check_network_policies()
    c.check_pdb()
    c.check_prometheus_retention()
    present = {
        "pdb": bool(c.get("PodDisruptionBudget", "vote-api")),
        "tls": bool(c.get("Ingress", "vote-api") and c.get("Ingress", "vote-api")["spec"].get("tls")),
        "redis-auth": c.check_redis_auth(),
        "ingress": bool(c.get("Ingress", "vote-api")),
        "networkpolicy": bool(c.of_kind("NetworkPolicy")),
        "prometheus": bool(c.get("Deployment", "prometheus")),
        "alertmanager": bool(c.get("Deployment", "alertmanager")),
        "seed": bool(c.get("Job", "vote-api-seed")),
        "grafana-dashboard": c.check_grafana_dashboard(args.chart),
    }
    for feature in FEATURES:
        if present[feature] != (feature in args.expect):
            c.fail(f"{feature}: expected {'present' if feature in args.expect else 'absent'}, found the opposite")
    c.extract(args.chart, args.extract_dir)

    for e in c.errors:
        print(f"  FAIL {args.rendered}: {e}", file=sys.stderr)
    if c.errors:
        sys.exit(1)
    print(f"  ok   {args.rendered}: {len(c.objects)} objects, policies hold")


if __name__ == "__main__":
    main()
