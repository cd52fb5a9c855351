#!/usr/bin/env python3
"""Live tests of charts/wayprobe (run by `scripts/test-chart live`).

  live.py dashboard --wayprobe BIN
      A real Prometheus scrapes `wayprobe demo` and evaluates the rules
      `wayprobe rules` makes for the example journeys; every query of the
      chart's dashboard must return series (the failure panels after checkout
      is broken through the demo's switch).

  live.py pod --wayprobe BIN --image IMAGE
      The chart rendered with the offline-built image, its Deployment and
      journeys ConfigMap run by `podman kube play` against the demo shop on
      the host's loopback: under the restricted security context the HTTP and
      browser journeys pass, no zombie is left, and the pod really runs as
      65534 with a read-only root, no capabilities, no_new_privs and seccomp.
      The same with chromedriver as a sidecar (`browser.mode: sidecar`).
      Then the builtin pod's container args, as uid 65534, against a journeys
      directory projected the way the kubelet writes ConfigMap volumes: an
      updated ConfigMap is picked up without a restart (podman's ConfigMap
      volumes are plain copies that never update).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check  # noqa: E402  (the static layer's render and dashboard helpers)

ROOT = check.ROOT


def free_port():
    # Below the ephemeral range, so a port picked now is not taken by an outgoing connection later.
    for port in range(20000 + os.getpid() % 5000, 32000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def http(url, data=None, timeout=5):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait(what, secs, f):
    deadline = time.time() + secs
    last = None
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.5)
    raise SystemExit(f"FAIL: timed out after {secs}s waiting for {what} (last error: {last})")


def metric_sum(text, name, **labels):
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


class Proc:
    """A child process, stopped at exit."""

    def __init__(self, cmd, log, **kw):
        self.log = log
        self.p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, **kw)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def tail(self):
        with open(self.log) as f:
            return "".join(f.readlines()[-30:])


# --- the dashboard against live data -------------------------------------------

def dashboard(args):
    tmp = tempfile.mkdtemp(prefix="wayprobe-dash-")
    procs = []
    try:
        shop_port, demo_port, prom_port = free_port(), free_port() + 1, free_port() + 2
        demo = Proc([args.wayprobe, "demo", "--interval", "2s", "--listen", f"127.0.0.1:{demo_port}",
                     "--shop-listen", f"127.0.0.1:{shop_port}"], os.path.join(tmp, "demo.log"))
        procs.append(demo)
        rules = os.path.join(tmp, "rules.yaml")
        subprocess.run([args.wayprobe, "rules", os.path.join(ROOT, "journeys"), "--matcher", 'job="wayprobe"',
                        "--interval", "2s", "--period-interval", "5s", "-o", rules], check=True)
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                            "rule_files": [rules],
                            "scrape_configs": [{"job_name": "wayprobe",
                                                "static_configs": [{"targets": [f"127.0.0.1:{demo_port}"]}]}]}, f)
        prom = Proc(["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
                     f"--web.listen-address=127.0.0.1:{prom_port}"], os.path.join(tmp, "prometheus.log"))
        procs.append(prom)
        url = f"http://127.0.0.1:{prom_port}"
        wait("prometheus ready", 60, lambda: http(url + "/-/ready")[0] == 200)
        wait("demo metrics", 60, lambda: http(f"http://127.0.0.1:{demo_port}/metrics")[0] == 200)
        with open(os.path.join(check.CHART, "files", "dashboards", "wayprobe.json")) as f:
            dash = json.load(f)
        exprs = list(check.dashboard_exprs(dash))

        def series(e):
            r = subprocess.run(["promtool", "query", "instant", "-o", "json", url, check.substitute(e)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            return len(json.loads(r.stdout or "[]"))

        # Let history build up (rates need two scrapes per window, browser runs take seconds).
        wait("journey runs scraped", 90, lambda: series('sum(journey_runs_total{result="success"}) > 10'))
        http(f"http://127.0.0.1:{shop_port}/-/demo/checkout?fail=true", data=b"")
        try:
            wait("checkout failures scraped", 60, lambda: series("journey_step_failures_total") > 0
                 and series("journey_last_success == 0") > 0)
            time.sleep(6)
            empty = [(title, e) for title, e in exprs if series(e) == 0]
        finally:
            http(f"http://127.0.0.1:{shop_port}/-/demo/checkout?fail=false", data=b"")
        for title, e in empty:
            print(f"FAIL dashboard panel {title!r}: no series for {check.substitute(e)}")
        if empty:
            print(prom.tail())
            return 1
        print(f"dashboard: all {len(exprs)} queries return series")
        return 0
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- a real pod --------------------------------------------------------------------

HTTP_JOURNEY = """name: pod-http
interval: 3s
timeout: 2500ms
vars:
  base_url: http://127.0.0.1:1
secrets:
  password: {env: SHOP_PASSWORD}
steps:
  - name: login
    http:
      method: POST
      url: "{{ base_url }}/api/login"
      json: {username: alice, password: "{{ secret.password }}"}
    expect:
      status: 200
slos:
  - {name: availability, objective: 99%}
"""

BROWSER_JOURNEY = """name: pod-browser
interval: 6s
timeout: 5500ms
vars:
  base_url: http://127.0.0.1:1
steps:
  - name: buy
    browser:
      - goto: "{{ base_url }}/shop"
      - click: "button.add[data-sku=sku-1]"
      - wait_for: {selector: "#cart-count", text: "1"}
slos:
  - {name: availability, objective: 99%}
"""


def host_descendants(root):
    """(pid, state) of root and every process below it, from the host's /proc."""
    children = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        tail = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(tail[1]), []).append((int(e), tail[0]))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        for c, state in children.get(p, []):
            out.append((c, state))
            stack.append(c)
    return out


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].split()
    return None


def project(d, files):
    """Writes a ConfigMap volume the way kubelet's AtomicWriter does (..data swap)."""
    os.makedirs(d, exist_ok=True)
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S.") + str(time.time_ns() % 10**9)
    os.makedirs(os.path.join(d, ts))
    for k, c in files.items():
        with open(os.path.join(d, ts, k), "w") as f:
            f.write(c)
    os.chmod(os.path.join(d, ts), 0o755)
    tmp = os.path.join(d, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(ts, tmp)
    os.rename(tmp, os.path.join(d, "..data"))
    for k in files:
        if not os.path.lexists(os.path.join(d, k)):
            os.symlink(os.path.join("..data", k), os.path.join(d, k))
    for e in os.listdir(d):
        p = os.path.join(d, e)
        if e.startswith("..") and e not in ("..data", ts) and os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif not e.startswith("..") and e not in files:
            os.unlink(p)


def pod(args, mode="builtin"):
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL pod:", what, flush=True)

    tmp = tempfile.mkdtemp(prefix="wayprobe-pod-")
    os.chmod(tmp, 0o755)
    procs = []
    yaml_path = os.path.join(tmp, "pod.yaml")
    played = False
    try:
        shop_port, demo_port, port = free_port(), free_port() + 1, free_port() + 2
        demo = Proc([args.wayprobe, "demo", "--interval", "1h", "--listen", f"127.0.0.1:{demo_port}",
                     "--shop-listen", f"127.0.0.1:{shop_port}"], os.path.join(tmp, "demo.log"))
        procs.append(demo)
        wait("demo shop", 30, lambda: http(f"http://127.0.0.1:{shop_port}/shop")[0] == 200)
        repo, tag = args.image.rsplit(":", 1)
        values = {
            "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
            "location": "pod",
            "service": {"port": port},
            "journeys": {"files": {"pod-http.yaml": HTTP_JOURNEY, "pod-browser.yaml": BROWSER_JOURNEY},
                         "vars": {"base_url": f"http://127.0.0.1:{shop_port}"}},
            # podman kube play cannot read Secret objects; the chart's secretKeyRef path is covered statically.
            "extraEnv": [{"name": "SHOP_PASSWORD", "value": "wonderland"}],
            "browser": {"maxSessions": 1, "memoryPerSessionMiB": 900},
        }
        if mode == "sidecar":
            driver_port = free_port() + 4
            values["browser"].update({"mode": "sidecar", "sidecar": {
                "image": {"pullPolicy": "Never"}, "port": driver_port,
                "command": ["chromedriver", f"--port={driver_port}", "--allowed-ips=127.0.0.1"]}})
        docs = [d for _, d in check.render(values, check.KUBE_VERSIONS[-1])]
        keep = [d for d in docs if d["kind"] in ("Deployment", "ConfigMap")
                and not d["metadata"].get("annotations", {}).get("helm.sh/hook")
                and not d["metadata"]["name"].endswith("-dashboard")]
        dep = next(d for d in keep if d["kind"] == "Deployment")
        ctr = dep["spec"]["template"]["spec"]["containers"][0]
        # podman 4.3 limits: no ports with host networking, probes not resolved by name
        # (the harness curls the probe paths itself).
        ctr.pop("ports", None)
        probes = {k: ctr.pop(k)["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")}
        with open(yaml_path, "w") as f:
            yaml.safe_dump_all(keep, f)
        r = subprocess.run(["podman", "kube", "play", "--network", "host", yaml_path], capture_output=True, text=True)
        played = r.returncode == 0
        if not played:
            raise SystemExit(f"FAIL: podman kube play:\n{r.stdout}{r.stderr}")
        name = f"{dep['spec']['template']['metadata']['labels']['app.kubernetes.io/instance']}-wayprobe-pod-wayprobe"
        names = subprocess.run(["podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
        name = next((n for n in names if n.endswith("-wayprobe") and "infra" not in n), name)
        base = f"http://127.0.0.1:{port}"
        try:
            wait("the pod's /-/ready", 60, lambda: http(base + probes["readinessProbe"])[0] == 200)
        except SystemExit:
            print(subprocess.run(["podman", "logs", name], capture_output=True, text=True).stderr[-3000:])
            raise
        expect(http(base + probes["livenessProbe"])[0] == 200, "/-/healthy")

        def runs():
            m = http(base + "/metrics")[1]
            return (metric_sum(m, "journey_runs_total", journey="pod-http", result="success") or 0,
                    metric_sum(m, "journey_runs_total", journey="pod-browser", result="success") or 0)

        try:
            wait("HTTP and browser journeys passing in the pod", 240, lambda: runs()[0] >= 5 and runs()[1] >= 10)
        except SystemExit:
            print(subprocess.run(["podman", "logs", name], capture_output=True, text=True).stderr[-3000:])
            raise
        m = http(base + "/metrics")[1]
        expect(metric_sum(m, "wayprobe_webdriver_up") is None and "wayprobe_webdriver_up 1" in m, "wayprobe_webdriver_up 1")

        pod_name = subprocess.run(["podman", "inspect", "--format", "{{.Pod}}", name],
                                  capture_output=True, text=True, check=True).stdout.strip()
        members = json.loads(subprocess.run(["podman", "pod", "inspect", pod_name], capture_output=True,
                                            text=True, check=True).stdout)
        members = members[0] if isinstance(members, list) else members
        pids = {}
        for c in members["Containers"]:
            pids[c["Name"]] = int(subprocess.run(["podman", "inspect", "--format", "{{.State.Pid}}", c["Name"]],
                                                 capture_output=True, text=True, check=True).stdout.strip())
        pid = pids[name]
        # builtin: the container's PID 1 is wayprobe's reaping init, with the prober,
        # chromedriver and Chromium below it. sidecar: one process namespace, whose
        # init (the infra container's) reaps what chromedriver leaves. None a zombie.
        def pod_procs():
            out = []
            for p in pids.values():
                out += [(p, "S")] + host_descendants(p)
            return out
        # A helper that exited a moment ago may not be reaped yet: count what stays.
        zombies = {p for p, s in pod_procs() if s == "Z"}
        for _ in range(3):
            time.sleep(0.5)
            zombies &= {p for p, s in pod_procs() if s == "Z"}
        expect(not zombies, f"{mode}: zombie processes in the pod after 10 browser runs: {sorted(zombies)}")
        procs_in = [(p, s) for n, root in pids.items() if "infra" not in n
                    for p, s in [(root, "S")] + host_descendants(root)]
        uids = {tuple(status_field(p, "Uid") or []) for p, _ in procs_in if os.path.exists(f"/proc/{p}")}
        expect(uids == {("65534",) * 4}, f"processes not all uid 65534: {uids}")
        expect(status_field(pid, "CapEff") == ["0000000000000000"], "capabilities left")
        expect(status_field(pid, "NoNewPrivs") == ["1"], "no_new_privs not set")
        expect(status_field(pid, "Seccomp") == ["2"], "no seccomp filter")
        ro = subprocess.run(["podman", "exec", name, "sh", "-c", "touch /probe-rw-check"], capture_output=True, text=True)
        expect(ro.returncode != 0 and "Read-only" in ro.stderr, f"root filesystem writable: {ro.stderr}")
        tmpw = subprocess.run(["podman", "exec", name, "sh", "-c", "touch /tmp/x && rm /tmp/x"])
        expect(tmpw.returncode == 0, "/tmp not writable")
        chromium = [p for p, _ in procs_in if os.path.exists(f"/proc/{p}/comm") and "chrom" in open(f"/proc/{p}/comm").read()]
        expect(chromium, "chromedriver/Chromium never ran in the pod")
        if mode == "sidecar":
            args_ = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            expect(f"--webdriver-url=http://127.0.0.1:{driver_port}" in args_, "sidecar: --webdriver-url")
        else:
            # ConfigMap update, kubelet-style, with the pod's own container args as uid 65534.
            failures.extend(configmap_reload(args, ctr, keep, shop_port, tmp))
    finally:
        if played:
            subprocess.run(["podman", "kube", "down", yaml_path], capture_output=True)
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"pod ({mode}): {len(failures)} failure(s)")
        return 1
    print(f"pod ({mode}): HTTP and browser journeys pass under the restricted context, no zombie"
          + ("" if mode == "sidecar" else ", ConfigMap updates reload"))
    return 0


def configmap_reload(args, ctr, docs, shop_port, tmp):
    failures = []
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    mount = next(m["mountPath"] for m in ctr["volumeMounts"] if m["name"] == "journeys")
    jdir = os.path.join(tmp, "journeys")
    files = {"pod-http.yaml": cm["data"]["pod-http.yaml"]}
    project(jdir, files)
    port = free_port() + 3
    argv = [a.replace(mount, jdir) for a in ctr["args"]]
    argv = [a if not a.startswith("--listen=") else f"--listen=127.0.0.1:{port}" for a in argv]
    argv = [a for a in argv if not a.startswith("--artifacts-dir=")] + [f"--artifacts-dir={tmp}/artifacts"]
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    for d in (home, tmp):
        os.chmod(d, 0o777)
    env = {"PATH": os.environ["PATH"], "HOME": home, "SHOP_PASSWORD": "wonderland", "WAYPROBE_NO_INIT": "1"}
    serve = Proc(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", args.wayprobe, *argv],
                 os.path.join(tmp, "reload.log"), env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait("serve as 65534", 30, lambda: http(base + "/-/ready")[0] == 200)
        m = http(base + "/metrics")[1]
        fp1 = re.search(r"^wayprobe_slo_rules_fingerprint (\d+)", m, re.M).group(1)
        files["pod-http-2.yaml"] = cm["data"]["pod-http.yaml"].replace("name: pod-http", "name: pod-http-2")
        project(jdir, files)
        try:
            wait("the ConfigMap update reloaded", 30,
                 lambda: "wayprobe_journeys_loaded 2" in http(base + "/metrics")[1])
        except SystemExit as e:
            failures.append(str(e))
            print(serve.tail())
        m = http(base + "/metrics")[1]
        fp2 = re.search(r"^wayprobe_slo_rules_fingerprint (\d+)", m, re.M).group(1)
        if fp1 == fp2:
            failures.append("the fingerprint did not follow the reloaded journeys")
        project(jdir, {"pod-http.yaml": "name: [broken\n"})
        try:
            wait("an invalid update refused", 30,
                 lambda: "wayprobe_config_last_reload_successful 0" in http(base + "/metrics")[1])
        except SystemExit as e:
            failures.append(str(e))
        if "wayprobe_journeys_loaded 2" not in http(base + "/metrics")[1]:
            failures.append("an invalid ConfigMap update dropped the running journeys")
    finally:
        serve.stop()
    for f in failures:
        print("FAIL reload:", f)
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["dashboard", "pod"])
    ap.add_argument("--wayprobe", required=True)
    ap.add_argument("--image", default="localhost/wayprobe:ci")
    args = ap.parse_args()
    args.wayprobe = os.path.abspath(args.wayprobe)
    if args.what == "dashboard":
        return dashboard(args)
    return pod(args, "builtin") or pod(args, "sidecar")


if __name__ == "__main__":
    sys.exit(main())
