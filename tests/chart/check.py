#!/usr/bin/env python3
"""Static tests of charts/wayprobe, with real tools and no cluster.

Run by scripts/test-chart (which makes the venv from requirements.txt):

    python tests/chart/check.py --wayprobe target/debug/wayprobe

For every values file (the defaults and each ci/*-values.yaml):
  - Helm v4's own lint --strict (helm-python-sdk wraps the Helm Go SDK) at
    three Kubernetes versions, then a render (= helm template);
  - kubernetes-validate --strict on every core object;
  - the ServiceMonitor and PrometheusRule against prometheus-operator's CRD
    schemas (tests/chart/crds/, v0.93.1) made strict about unknown fields;
  - promtool check rules on every PrometheusRule, whose spec must equal what
    `wayprobe rules --format prometheus-operator` gives for the same journeys;
  - the chart's structural promises (directory mount, restricted context,
    browser modes, no live-cluster gate, probes).
Plus: yamllint, appVersion = the crate version, the dashboard through a
grafana-foundation-sdk round trip and every panel query through promtool,
schema negatives refused, NOTES.txt rendered by a client-side install.

Every failure is collected and printed; the exit status is 1 if any.
"""

import argparse
import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from helm_python import _native

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "wayprobe")
HERE = os.path.dirname(os.path.abspath(__file__))
KUBE_VERSIONS = ["1.27.0", "1.30.0", "1.33.0"]
CR_API = "monitoring.coreos.com/v1"
FAILURES = []
QUIET = [False]  # set while a planted fault is expected to fail


def fail(where, what):
    FAILURES.append(f"{where}: {what}")
    if not QUIET[0]:
        print(f"FAIL {where}: {what}", flush=True)


def check(cond, where, what):
    if not cond:
        fail(where, what)
    return cond


# --- prometheus-operator CRDs, strict -------------------------------------

def strictify(s):
    """Unknown fields become errors, like the API server's strict validation."""
    if isinstance(s, dict):
        if (s.get("type") == "object" and "properties" in s
                and not s.get("x-kubernetes-preserve-unknown-fields")
                and "additionalProperties" not in s):
            s["additionalProperties"] = False
        for k, v in s.items():
            if k in ("properties", "patternProperties"):
                for p in v.values():
                    strictify(p)
            elif isinstance(v, (dict, list)):
                strictify(v)
    elif isinstance(s, list):
        for i in s:
            strictify(i)
    return s


def load_crds():
    out = {}
    for p in glob.glob(os.path.join(HERE, "crds", "*.yaml")):
        with open(p) as f:
            for d in yaml.safe_load_all(f):
                if not d or d.get("kind") != "CustomResourceDefinition":
                    continue
                for v in d["spec"]["versions"]:
                    s = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                    s["properties"]["metadata"] = {"type": "object"}
                    out[(f'{d["spec"]["group"]}/{v["name"]}', d["spec"]["names"]["kind"])] = strictify(s)
    return out


# --- helpers ----------------------------------------------------------------

def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def render(values, kube_version, name="rel", namespace="probe"):
    """= helm template NAME chart -n NAMESPACE --api-versions monitoring.coreos.com/v1 --kube-version V."""
    with helm.Chart.load(CHART) as ch:
        out = json.loads(_native.call_string("helm_render", ch._raw(), json.dumps(values), json.dumps({
            "name": name, "namespace": namespace, "api_versions": [CR_API], "kube_version": "v" + kube_version})))
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                docs.append((path, d))
    return docs


def deep_merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def journeys_dir(values, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    for name, text in values.get("journeys", {}).get("files", {}).items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


def generated_rules(wayprobe, jdir, fmt, extra=()):
    r = run([wayprobe, "rules", jdir, "--format", fmt, *extra])
    if r.returncode != 0:
        raise RuntimeError(f"wayprobe rules failed: {r.stderr}")
    return r.stdout


# --- dashboard ---------------------------------------------------------------

SUBST = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def dashboard_exprs(dash):
    for p in dash.get("panels", []):
        for sub in [p] + p.get("panels", []):
            for t in sub.get("targets", []):
                if t.get("expr"):
                    yield sub.get("title", "?"), t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and isinstance(q, str):
            m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]+\)\s*", q)
            yield "$" + v["name"], m.group(1) if m else q


def substitute(e):
    e = re.sub(r"\$\{?(__[a-z_]+)\}?", lambda m: SUBST.get(m.group(1), "5m"), e)
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?", ".*", e)


def lost_keys(orig, back, path=""):
    """Keys of `orig` missing from `back` (the SDK round trip)."""
    lost = []
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            return [path or "/"]
        for k, v in orig.items():
            if k not in back:
                # The SDK drops only empty defaults; anything with content must survive.
                if v not in ({}, [], "", None):
                    lost.append(f"{path}/{k}")
            else:
                lost += lost_keys(v, back[k], f"{path}/{k}")
    elif isinstance(orig, list):
        if not isinstance(back, list) or len(back) != len(orig):
            return [path]
        for i, (a, b) in enumerate(zip(orig, back)):
            lost += lost_keys(a, b, f"{path}[{i}]")
    return lost


def check_dashboard(where, text, promtool, tmp):
    try:
        dash = json.loads(text)
    except ValueError as e:
        return fail(where, f"dashboard JSON: {e}")
    register_default_plugins()
    back = json.loads(json.dumps(Dashboard.from_json(copy.deepcopy(dash)), cls=JSONEncoder))
    lost = lost_keys(dash, back)
    check(not lost, where, f"grafana-foundation-sdk round trip lost keys: {lost[:10]}")
    exprs = list(dashboard_exprs(dash))
    check(len(exprs) >= 15, where, f"only {len(exprs)} queries in the dashboard")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": substitute(e)} for i, (_, e) in enumerate(exprs)]}]}
    p = os.path.join(tmp, "dashboard-rules.yaml")
    with open(p, "w") as f:
        yaml.safe_dump(rules, f)
    r = run([promtool, "check", "rules", p])
    check(r.returncode == 0, where, f"promtool check rules on the dashboard queries:\n{r.stdout}{r.stderr}")
    for needle in ["journey_last_success", "journey_step_duration_seconds_bucket", "journey_step_failures_total",
                   "slo:current_burn_rate:ratio", "slo:period_error_budget_remaining:ratio",
                   "wayprobe_schedule_lag_seconds_bucket", "wayprobe_runs_skipped_total"]:
        check(any(needle in e for _, e in exprs), where, f"no panel queries {needle}")
    return dash


# --- per values file ---------------------------------------------------------

def container(dep, name):
    return next((c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name), None)


def check_deployment(where, dep, values):
    spec = dep["spec"]["template"]["spec"]
    wp = container(dep, "wayprobe")
    if not check(wp is not None, where, "no wayprobe container"):
        return
    args = wp.get("args", [])
    mounts = {m["name"]: m for m in wp.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    jm = mounts.get("journeys")
    if check(jm is not None, where, "journeys not mounted"):
        check("subPath" not in jm and "subPathExpr" not in jm, where, "journeys mounted with subPath (never updates)")
        check(f"--journeys={jm['mountPath']}" in args, where, "--journeys is not the mounted directory")
    check("configMap" in vols.get("journeys", {}), where, "journeys volume is not a ConfigMap")
    check(all("subPath" not in m for m in wp.get("volumeMounts", []) if m["name"] in ("journeys", "secrets")),
          where, "subPath on a live-updated volume")
    check("emptyDir" in vols.get("tmp", {}) and vols["tmp"]["emptyDir"].get("sizeLimit"), where,
          "/tmp is not a size-limited emptyDir")
    check(mounts.get("tmp", {}).get("mountPath") == "/tmp", where, "/tmp not mounted")
    mode = values.get("browser", {}).get("mode", "builtin")
    urls = [a for a in args if a.startswith("--webdriver-url=")]
    side = container(dep, "chromedriver")
    if mode == "sidecar":
        check(side is not None, where, "sidecar mode without a chromedriver container")
        check(urls == ["--webdriver-url=http://127.0.0.1:4444"], where, f"sidecar webdriver url: {urls}")
        check(spec.get("shareProcessNamespace") is True, where, "sidecar mode must share the process namespace (reaping)")
    elif mode == "remote":
        check(urls == ["--webdriver-url=" + values["browser"]["remoteUrl"]], where, f"remote webdriver url: {urls}")
    else:
        check(side is None and not urls, where, f"{mode} mode must not set a webdriver url or sidecar")
    if "securityContext" not in values and "podSecurityContext" not in values:
        sc, psc = wp.get("securityContext", {}), spec.get("securityContext", {})
        for c in [wp] + ([side] if side else []):
            s = c.get("securityContext", {})
            check(s.get("runAsUser") == 65534 and s.get("runAsNonRoot") is True, where, f"{c['name']}: not non-root 65534")
            check(s.get("readOnlyRootFilesystem") is True, where, f"{c['name']}: root filesystem writable")
            check(s.get("allowPrivilegeEscalation") is False, where, f"{c['name']}: privilege escalation allowed")
            check(s.get("capabilities", {}).get("drop") == ["ALL"], where, f"{c['name']}: capabilities not all dropped")
            check(s.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, f"{c['name']}: seccomp not RuntimeDefault")
        check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              where, "pod security context not restricted")
        check(sc is not None, where, "no container security context")
    res = wp.get("resources", {})
    check(res.get("limits", {}).get("memory"), where, "no memory limit on wayprobe")
    if not values.get("resources") and mode == "builtin":
        sessions = values.get("browser", {}).get("maxSessions", 2)
        per = values.get("browser", {}).get("memoryPerSessionMiB", 768)
        check(res["limits"]["memory"] == f"{64 + sessions * per}Mi", where,
              f"memory does not scale with the sessions: {res['limits']['memory']}")
        check(f"--max-browser-sessions={sessions}" in args, where, "--max-browser-sessions missing")
    if values.get("readinessProbe", {}).get("enabled", True):
        check(wp.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/-/ready", where, "readiness probe not /-/ready")
    if values.get("livenessProbe", {}).get("enabled", True):
        check(wp.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy", where, "liveness probe not /-/healthy")
    tracing = values.get("tracing", {})
    otlp = tracing.get("otlp", {})
    env = {e["name"]: e for e in wp.get("env", [])}
    if otlp.get("endpoint"):
        check(f"--otlp-endpoint={otlp['endpoint']}" in args, where, "--otlp-endpoint missing")
        check(f"--trace-sample-ratio={tracing.get('sampleRatio', 0.01)}" in args, where, "--trace-sample-ratio missing")
        secret = otlp.get("headersSecret", {}).get("name")
        ref = env.get("OTEL_EXPORTER_OTLP_HEADERS", {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") == secret if secret else not ref, where,
              "OTLP headers must come from headersSecret (a Secret), and only then")
        tls = otlp.get("tls", {})
        mounts = {m["name"]: m for m in wp.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"].get("volumes", [])}
        ca_obj = tls.get("caConfigMap") or tls.get("caSecret")
        ca_env = env.get("OTEL_EXPORTER_OTLP_CERTIFICATE", {}).get("value", "")
        if ca_obj:
            key = tls.get("caKey", "ca.crt")
            source = volumes.get("otlp-ca", {})
            named = (source.get("configMap", {}).get("name") if tls.get("caConfigMap")
                     else source.get("secret", {}).get("secretName"))
            check(named == ca_obj and ca_env == f"{mounts.get('otlp-ca', {}).get('mountPath')}/{key}",
                  where, "OTLP CA: the named object mounted and OTEL_EXPORTER_OTLP_CERTIFICATE at its file")
        else:
            check(not ca_env and "otlp-ca" not in volumes, where, "OTLP CA without tracing.otlp.tls")
        client = tls.get("clientSecret")
        cert_env = env.get("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", {}).get("value", "")
        key_env = env.get("OTEL_EXPORTER_OTLP_CLIENT_KEY", {}).get("value", "")
        if client:
            base = mounts.get("otlp-client", {}).get("mountPath")
            check(volumes.get("otlp-client", {}).get("secret", {}).get("secretName") == client
                  and cert_env == f"{base}/tls.crt" and key_env == f"{base}/tls.key",
                  where, "OTLP client certificate: the Secret mounted, both variables at its files")
        else:
            check(not cert_env and not key_env, where, "OTLP client variables without clientSecret")
    else:
        check(not any(a.startswith("--otlp") for a in args)
              and not any(n.startswith("OTEL_EXPORTER_OTLP_") for n in env),
              where, "OTLP flags without an endpoint")
    if tracing.get("urlTemplate"):
        check(f"--trace-url-template={tracing['urlTemplate']}" in args, where, "--trace-url-template missing")
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(("checksum/journeys" in annotations) == bool(values.get("journeys", {}).get("checksumRestart")
                                                        and not values.get("journeys", {}).get("existingConfigMap")),
          where, "checksum annotation must be opt-in")


def check_sharding(where, dep, kinds, values):
    """Sharded: pod N of the StatefulSet runs `--shard N/replicas`, from the pod-index label."""
    wp = container(dep, "wayprobe")
    args = wp.get("args", [])
    shard_args = [a for a in args if a.startswith("--shard")]
    if not values.get("sharding", {}).get("enabled"):
        check(not shard_args, where, f"--shard without sharding: {shard_args}")
        return
    n = values.get("replicas", 1)
    check(shard_args == [f"--shard=$(WAYPROBE_POD_INDEX)/{n}"], where, f"shard argument: {shard_args}")
    env = {e["name"]: e for e in wp.get("env", [])}
    ref = env.get("WAYPROBE_POD_INDEX", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    check(ref == "metadata.labels['apps.kubernetes.io/pod-index']", where, f"pod index from {ref}")
    check(dep["spec"]["replicas"] == n, where, "replicas")
    check(dep["spec"].get("podManagementPolicy") == "Parallel", where, "shards start one by one")
    check(dep["spec"].get("serviceName"), where, "StatefulSet without serviceName")
    check("strategy" not in dep["spec"], where, "a Deployment strategy on a StatefulSet")
    pdb = kinds.get("PodDisruptionBudget")
    if n > 1 and check(pdb is not None, where, "sharded without a PodDisruptionBudget"):
        check(pdb["spec"].get("maxUnavailable") == 1, where, "PDB lets more than one shard go")
        check(pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
              where, "PDB does not select the shards")


def values_cases():
    cases = [("values.yaml", {})]
    for p in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml"))):
        with open(p) as f:
            cases.append((os.path.relpath(p, CHART), yaml.safe_load(f) or {}))
    return cases


def check_case(name, values, args, crds, tmp):
    prom = values.get("prometheusRule", {}).get("enabled")
    jdir = None
    if prom:
        # The rules come from wayprobe's generator, for the journeys in these values.
        jdir = journeys_dir(values, tmp)
        gen = yaml.safe_load(generated_rules(args.wayprobe, jdir, "helm-values"))
        values = deep_merge(values, gen)
    for kv in KUBE_VERSIONS:
        r = helm.lint(CHART, values, strict=True, kube_version="v" + kv)
        check(not r["errors"], f"{name} lint k8s {kv}", r["errors"])
    kinds = {}
    for kv in KUBE_VERSIONS:
        where = f"{name} k8s {kv}"
        try:
            docs = render(values, kv)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            fail(where, f"render: {e}")
            continue
        for path, d in docs:
            kinds.setdefault(d["kind"], d)
            if d["apiVersion"] == CR_API:
                schema = crds.get((d["apiVersion"], d["kind"]))
                if check(schema is not None, where, f"no CRD schema for {d['kind']}"):
                    errs = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                            for e in jsonschema.Draft7Validator(schema).iter_errors(d)]
                    check(not errs, where, f"{d['kind']} against the strict CRD: {errs[:5]}")
            else:
                try:
                    kubernetes_validate.validate(d, kv, strict=True)
                except kubernetes_validate.ValidationError as e:
                    fail(where, f"{d['kind']} {d['metadata'].get('name')}: {e.message} at {list(e.path)}")
                except Exception as e:  # noqa: BLE001
                    fail(where, f"{d['kind']}: {e}")
    sharded = values.get("sharding", {}).get("enabled", False)
    dep = kinds.get("StatefulSet" if sharded else "Deployment")
    check(("Deployment" in kinds) != ("StatefulSet" in kinds), name, "exactly one of Deployment and StatefulSet")
    if check(dep is not None, name, "no StatefulSet (sharding.enabled)" if sharded else "no Deployment"):
        check_deployment(name, dep, values)
        check_sharding(name, dep, kinds, values)
    for kind, d in kinds.items():
        if kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
            continue
        check(d["metadata"].get("namespace") == "probe" or kind in ("ClusterRole",), name, f"{kind} not in the release namespace")
    if values.get("serviceMonitor", {}).get("enabled"):
        sm = kinds.get("ServiceMonitor")
        if check(sm is not None, name, "serviceMonitor.enabled but no ServiceMonitor"):
            for k, v in values["serviceMonitor"].get("labels", {}).items():
                check(sm["metadata"]["labels"].get(k) == v, name, f"ServiceMonitor label {k} missing")
            check(sm["spec"]["endpoints"][0]["port"] == kinds["Service"]["spec"]["ports"][0]["name"], name,
                  "ServiceMonitor port is not the Service's named port")
    else:
        check("ServiceMonitor" not in kinds, name, "ServiceMonitor without the switch")
    if prom:
        pr = kinds.get("PrometheusRule")
        if check(pr is not None, name, "prometheusRule.enabled but no PrometheusRule"):
            for k, v in values["prometheusRule"].get("labels", {}).items():
                check(pr["metadata"]["labels"].get(k) == v, name, f"PrometheusRule label {k} missing")
            want = yaml.safe_load(generated_rules(args.wayprobe, jdir, "prometheus-operator"))
            check(pr["spec"] == want["spec"], name,
                  "the rendered PrometheusRule's spec differs from `wayprobe rules --format prometheus-operator`")
            p = os.path.join(tmp, "rule.yaml")
            with open(p, "w") as f:
                yaml.safe_dump(pr["spec"], f)
            r = run([args.promtool, "check", "rules", p])
            check(r.returncode == 0, name, f"promtool check rules:\n{r.stdout}{r.stderr}")
            check(pr["metadata"]["annotations"].get("wayprobe.dev/slo-rules-fingerprint")
                  == values["prometheusRule"]["fingerprint"], name, "fingerprint annotation")
    else:
        check("PrometheusRule" not in kinds, name, "PrometheusRule without the switch")
    if values.get("dashboard", {}).get("enabled", True):
        cm = next((d for p, d in render(values, KUBE_VERSIONS[-1]) if p.endswith("dashboard.yaml")), None)
        if check(cm is not None, name, "no dashboard ConfigMap"):
            check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", name, "dashboard lacks the sidecar label")
            check(cm["metadata"].get("annotations", {}).get("grafana_folder"), name, "dashboard lacks the folder annotation")
            for key, text in cm["data"].items():
                check("{{journey}}" in text, name, f"{key}: Grafana legends were templated by Helm")
                check_dashboard(f"{name} {key}", text, args.promtool, tmp)
    if values.get("tests", {}).get("enabled", True) and values.get("service", {}).get("enabled", True):
        check(kinds.get("Pod", {}).get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test",
              name, "no helm test hook pod")
    # NOTES.txt, through a client-side install (= helm install --dry-run).
    rel = helm.Config(storage_driver="memory", namespace="probe").install(CHART, "rel", values, dry_run="client")
    notes = rel.get("info", {}).get("notes") or rel.get("notes") or ""
    check("port-forward" in notes and "status page" in notes, name, "NOTES do not say how to reach the status page")
    check("No alert or no data" in notes and "wayprobe rules" in notes, name, "NOTES lack the what-to-check list")
    if values.get("serviceMonitor", {}).get("enabled"):
        check("release" in notes and "Status -> Targets" in notes, name, "NOTES lack the selector hint")
    return notes


def self_test(values, args, crds, tmp):
    """The validators used above must catch a planted fault of each kind."""
    docs = {d["kind"]: d for _, d in render(values, KUBE_VERSIONS[-1])}
    sm = copy.deepcopy(docs["ServiceMonitor"])
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    check(any(jsonschema.Draft7Validator(crds[(CR_API, "ServiceMonitor")]).iter_errors(sm)), "self-test",
          "the strict CRD check accepted a misspelled ServiceMonitor field")
    svc = copy.deepcopy(docs["Service"])
    svc["spec"]["ports"][0]["protocl"] = "TCP"
    try:
        kubernetes_validate.validate(svc, KUBE_VERSIONS[-1], strict=True)
        fail("self-test", "kubernetes-validate accepted a misspelled Service field")
    except kubernetes_validate.ValidationError:
        pass
    spec = copy.deepcopy(docs["PrometheusRule"]["spec"])
    spec["groups"][0]["rules"][0]["expr"] = "sum(rate(journey_runs_total[5m]"
    p = os.path.join(tmp, "broken-rule.yaml")
    with open(p, "w") as f:
        yaml.safe_dump(spec, f)
    check(run([args.promtool, "check", "rules", p]).returncode != 0, "self-test", "promtool accepted a broken rule")
    dep = copy.deepcopy(docs["Deployment"])
    dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "checkout.yaml"
    before = len(FAILURES)
    QUIET[0] = True
    check_deployment("self-test", dep, values)
    QUIET[0] = False
    check(len(FAILURES) > before, "self-test", "a subPath journeys mount went unnoticed")
    del FAILURES[before:]


NEGATIVES = [
    ("misspelled key", {"serviceMonitr": {"enabled": True}}),
    ("misspelled nested key", {"browser": {"maxSesions": 2}}),
    ("wrong type", {"replicas": "two"}),
    ("wrong type of a switch", {"serviceMonitor": {"enabled": "yes"}}),
    ("bad duration", {"journeys": {"watchInterval": "5 seconds"}}),
    ("bad Prometheus duration", {"serviceMonitor": {"interval": "30 seconds"}}),
    ("unknown browser mode", {"browser": {"mode": "firefox"}}),
    ("journey file not *.yaml", {"journeys": {"files": {"checkout.txt": "name: x"}}}),
    ("bad digest", {"image": {"digest": "latest"}}),
    ("rule group without rules", {"prometheusRule": {"groups": [{"name": "g"}]}}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wayprobe", required=True)
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()
    args.wayprobe = os.path.abspath(args.wayprobe)

    r = run([os.path.join(os.path.dirname(sys.executable), "yamllint"), "-s", "-c", os.path.join(HERE, "yamllint.yaml"),
             os.path.join(CHART, "Chart.yaml"), os.path.join(CHART, "values.yaml"), os.path.join(CHART, "ci")])
    check(r.returncode == 0, "yamllint", r.stdout + r.stderr)

    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        crate_version = tomllib.load(f)["package"]["version"]
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    check(chart["appVersion"] == crate_version, "Chart.yaml",
          f"appVersion {chart['appVersion']} is not the crate version {crate_version}")
    check(chart["apiVersion"] == "v2", "Chart.yaml", "apiVersion must be v2")

    # The users' Containerfile and the offline test image hold the same packages, user and entry point.
    with open(os.path.join(ROOT, "Containerfile")) as f:
        cf = f.read()
    with open(os.path.join(ROOT, "scripts", "build-image")) as f:
        bi = f.read()
    pkgs = re.search(r'^packages="([^"]+)"', bi, re.M).group(1).split()
    cf_pkgs = re.search(r"--no-install-recommends\s*\\?\s*([a-z0-9. \-\\\n]+?)\s*&&", cf).group(1).replace("\\", " ").split()
    check(sorted(pkgs) == sorted(cf_pkgs), "Containerfile", f"packages {cf_pkgs} differ from scripts/build-image's {pkgs}")
    check("USER 65534:65534" in cf and "USER=65534:65534" in bi, "Containerfile", "not running as 65534 in both images")
    check('ENTRYPOINT ["/usr/local/bin/wayprobe"]' in cf and 'ENTRYPOINT=["/usr/local/bin/wayprobe"]' in bi,
          "Containerfile", "entry points differ")

    crds = load_crds()
    check({("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")} <= set(crds),
          "crds", f"missing CRD schemas: {sorted(crds)}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, values in values_cases():
            print(f"== {name}", flush=True)
            check_case(name, values, args, crds, tmp)

        default = dict(values_cases())["ci/default-values.yaml"]
        jdir = journeys_dir(default, tmp)
        self_test(deep_merge(default, yaml.safe_load(generated_rules(args.wayprobe, jdir, "helm-values"))),
                  args, crds, tmp)

        # Each negative must be refused by values.schema.json, and only by it.
        with helm.Chart.load(CHART) as ch:
            ch.validate_schema({})
            for what, bad in NEGATIVES:
                try:
                    ch.validate_schema(bad)
                    fail("schema", f"accepted a {what}: {bad}")
                except helm.HelmValuesError:
                    pass
        # The drift demonstration: an SLO edited after generating the rules
        # gives serve another fingerprint than the one the rules carry.
        case = dict(values_cases())["ci/default-values.yaml"]
        jdir = journeys_dir(case, tmp)
        gen = yaml.safe_load(generated_rules(args.wayprobe, jdir, "helm-values"))
        edited = {k: v.replace("99.5%", "99.9%") for k, v in case["journeys"]["files"].items()}
        jdir2 = journeys_dir({"journeys": {"files": edited}}, tmp)
        gen2 = yaml.safe_load(generated_rules(args.wayprobe, jdir2, "helm-values"))
        check(gen["prometheusRule"]["fingerprint"] != gen2["prometheusRule"]["fingerprint"], "drift",
              "an edited objective must change the fingerprint")

    if FAILURES:
        print(f"\nchart tests: {len(FAILURES)} failure(s)")
        for f in FAILURES:
            print(" -", f.splitlines()[0][:300])
        return 1
    print("chart tests: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
