#!/usr/bin/python3
"""The dashboard in a real browser, and scripts/plot-run on the same real run (issue #12).

Starts a real 3-site cluster with scripts/run-local-cluster (real `longhaul` processes, mutual
TLS on loopback), opens the coordinator's dashboard in headless Chromium (Debian's chromium +
chromium-driver, driven by python3-selenium), checks that the sites table lists the three
sites and that the loss chart gains points as rounds close, saves a screenshot
(WORK_DIR/dashboard.png), then lets the run finish and checks scripts/plot-run's PNGs.

The coordinator's port requires a client certificate, which a headless browser cannot be
given on the command line; this test puts a small loopback-only proxy in between that
forwards GETs over mutual TLS with a site certificate. The proxy exists only in this test.

  test_dashboard_and_plots.py --longhaul BIN --source-dir DIR --work-dir DIR
"""
import http.client
import http.server
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lhtest import fail, parse_args  # noqa: E402


def wait_for(what, pred, timeout_s, poll_s=0.25):
    """pred() until truthy (returned) or fail after timeout_s."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(poll_s)
    fail(f"timed out after {timeout_s} s waiting for {what}")


class Proxy(http.server.ThreadingHTTPServer):
    """GET-only HTTP -> HTTPS (mutual TLS) forwarder on 127.0.0.1 for the browser."""

    def __init__(self, port, certs, cert_name):
        self.upstream_port = port
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(certs, "ca.crt"))
        ctx.load_cert_chain(os.path.join(certs, cert_name + ".crt"), os.path.join(certs, cert_name + ".key"))
        self.ctx = ctx
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        try:
            c = http.client.HTTPSConnection("127.0.0.1", self.server.upstream_port, context=self.server.ctx, timeout=10)
            c.request("GET", self.path)
            r = c.getresponse()
            body = r.read()
            self.send_response(r.status)
            self.send_header("Content-Type", r.getheader("Content-Type", "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            c.close()
        except (OSError, http.client.HTTPException) as e:
            self.send_error(502, f"upstream: {e}")

    def log_message(self, *args):
        pass


def main():
    a = parse_args()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        fail("python3-selenium is missing: run scripts/bootstrap (Debian: python3-selenium chromium chromium-driver)")
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            fail(f"{tool} is missing: run scripts/bootstrap (Debian: chromium chromium-driver)")

    work = a.work_dir
    run_dir = os.path.join(work, "run")
    src = a.source_dir
    rounds = 24  # long enough that the coordinator is still up when the screenshot is taken
    env = dict(os.environ, LONGHAUL=a.longhaul, SITE_SET="--set train.batch_size=4 --set train.steps=200")
    cluster_log = open(os.path.join(work, "cluster.log"), "w")
    cluster = subprocess.Popen(
        [os.path.join(src, "scripts", "run-local-cluster"), "--run-dir", run_dir,
         "--set", f"coordinator.rounds={rounds}", "--set", "sync.inner_steps=3",
         "--set", "eval.batches=1", "--set", "coordinator.linger_s=5",
         os.path.join(src, "configs", "coordinator.toml")]
        + [os.path.join(src, "configs", f"site-{s}.toml") for s in "abc"],
        stdout=cluster_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    driver = None
    proxy = None
    try:
        port_file = os.path.join(run_dir, "coordinator", "port")
        wait_for("the coordinator's port file", lambda: os.path.isfile(port_file) and open(port_file).read().strip(), 120)
        port = int(open(port_file).read())
        proxy = Proxy(port, os.path.join(run_dir, "certs"), "site-a")
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{proxy.server_address[1]}/"

        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1250", "--no-first-run", "--disable-extensions"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        driver.set_page_load_timeout(30)
        driver.get(url)
        if driver.title != "Longhaul":
            fail(f"page title {driver.title!r}")

        def site_rows():
            rows = driver.find_elements(By.CSS_SELECTOR, "#sites tbody tr[data-site]")
            return sorted(r.get_attribute("data-site") for r in rows)
        wait_for("three sites in the sites table", lambda: site_rows() == ["site-a", "site-b", "site-c"], 120)
        headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#sites thead th")]
        for h in ("site", "state", "bytes up", "uploads accepted"):
            if h not in [x.lower() for x in headers]:
                fail(f"sites table header {h!r} missing in {headers}")

        def loss_points():
            return len(driver.find_elements(By.CSS_SELECTOR, "#chart-loss circle.pt"))
        first = wait_for("a first point on the loss chart", loss_points, 180)
        more = wait_for("the loss chart to gain points as rounds close", lambda: loss_points() > first and loss_points(), 180)
        print(f"loss chart: {first} -> {more} points without a reload")
        for chart in ("chart-bytes", "chart-duration", "chart-loss-time"):
            if not driver.find_elements(By.CSS_SELECTOR, f"#{chart} circle.pt"):
                fail(f"#{chart} has no points")
        run_text = driver.find_element(By.ID, "run").text
        if f"/ {rounds}" not in run_text:
            fail(f"run summary does not show the round of {rounds}: {run_text!r}")
        time.sleep(2.5)  # one more poll so the screenshot shows the newest state
        shot = os.path.join(work, "dashboard.png")
        driver.save_screenshot(shot)
        with open(shot, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                fail("the screenshot is not a PNG")
        print(f"screenshot: {shot}")
        def run_finished():
            try:
                with open(os.path.join(run_dir, "coordinator", "metrics.jsonl")) as f:
                    return sum('"event":"round"' in l for l in f) >= rounds
            except OSError:
                return False
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        if run_finished():  # polls after the coordinator exited fail at the test's proxy: expected
            severe = [e for e in severe if "status of 502" not in e.get("message", "")]
        if severe:
            fail(f"errors in the browser console: {severe}")
    finally:
        if driver:
            driver.quit()
        if proxy:
            proxy.shutdown()

    # ---- the run finishes; plot it
    try:
        cluster.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(cluster.pid, signal.SIGTERM)
        cluster.wait(timeout=30)
        fail("the cluster did not finish its rounds in 300 s; see " + cluster_log.name)
    if cluster.returncode != 0:
        fail(f"run-local-cluster exited {cluster.returncode}; see {cluster_log.name}")
    plots = os.path.join(work, "plots")
    r = subprocess.run([os.path.join(src, "scripts", "plot-run"), run_dir, "--out", plots],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"plot-run exited {r.returncode}: {r.stderr}")
    import matplotlib.image as mpimg
    for name in ("loss_per_round.png", "loss_vs_time.png", "bytes_per_round.png", "round_durations.png", "sites.png"):
        p = os.path.join(plots, name)
        if p not in r.stdout.split():
            fail(f"plot-run did not report {p}: {r.stdout}")
        img = mpimg.imread(p)
        if img.shape[0] < 300 or img.shape[1] < 500 or img.std() < 0.01:
            fail(f"{p}: {img.shape} std {img.std():.4f}: too small or blank")
    empty = subprocess.run([os.path.join(src, "scripts", "plot-run"), work], capture_output=True, text=True, timeout=60)
    if empty.returncode != 2 or "no coordinator metrics.jsonl" not in empty.stderr:
        fail(f"plot-run on a dir without a run: exit {empty.returncode}, {empty.stderr!r}")
    print("ok")


if __name__ == "__main__":
    main()
