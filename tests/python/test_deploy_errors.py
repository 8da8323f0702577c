#!/usr/bin/env python3
"""Deployment mistakes are explained where they are made (issue #14 §1-2, #12 §1 "Access").

Real `longhaul` processes over loopback with real certificates made by `longhaul certs`:
  * a coordinator or site whose TLS files are wrong (missing, key readable by others, key of
    another certificate) exits 2 naming the config key and the path, and writes no state;
  * a coordinator bound to loopback whose certificate names other hosts says so at start;
  * a site that cannot succeed (identity not on the allow-list, wrong CA file, name mismatch,
    wrong path) exits 2 after at most two attempts with one short line naming what to fix;
  * a site whose coordinator is unreachable retries with backoff, says for how long it has been
    unreachable, and stops within a second or two on SIGTERM, even in the middle of an attempt;
  * operator identities (`certs issue --role operator`, PKCS#12 export) read HTTPS routes and
    are refused the WebSocket with HTTP 403 and the reason; the optional plain-HTTP listener
    serves GETs on loopback only.

Run by ctest as: python test_deploy_errors.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time

import lhtest

check = lhtest.Checks()


def main():
    a = lhtest.parse_args()
    lh, work = a.longhaul, a.work_dir
    os.chdir(work)

    def run(args, timeout=60, env=None):
        return subprocess.run([lh] + args, capture_output=True, text=True, timeout=timeout, env=env)

    def certs(*args):
        p = run(["certs"] + list(args))
        if p.returncode != 0:
            sys.exit(f"certs {' '.join(args)} failed: {p.stderr}")
        return p.stdout

    # ---- one PKI layout, as docs/deployment.md describes it
    certs("init", "--out", "ca")
    certs("issue", "--ca", "ca", "--name", "coordinator", "--dns", "localhost", "--dns", "coord.example",
          "--ip", "127.0.0.1", "--out", "coordinator")
    for s in ("site-a", "site-c"):
        certs("issue", "--ca", "ca", "--name", s, "--out", s)
    certs("init", "--out", "ca2")  # another run's CA
    certs("issue", "--ca", "ca2", "--name", "site-a", "--out", "site-a-ca2")
    with open("p12pass", "w") as f:
        f.write("correct horse\n")
    out = certs("issue", "--ca", "ca", "--name", "ops-alice", "--role", "operator", "--out", "ops-alice",
                "--p12", "--p12-password-file", "p12pass")
    check("certs issue --role operator --p12 says what it wrote",
          "operator certificate: ops-alice/ops-alice.crt" in out and "ops-alice/ops-alice.p12" in out, out)
    certs("issue", "--ca", "ca", "--name", "ops-bob", "--role", "operator", "--out", "ops-bob")
    p = subprocess.run(["openssl", "x509", "-in", "ops-alice/ops-alice.crt", "-noout", "-subject", "-ext",
                        "extendedKeyUsage"], capture_output=True, text=True)
    check("operator certificate: OU = operator, clientAuth only",
          "OU = operator" in p.stdout and "TLS Web Client Authentication" in p.stdout
          and "Server" not in p.stdout, p.stdout + p.stderr)
    p = subprocess.run(["openssl", "pkcs12", "-in", "ops-alice/ops-alice.p12", "-passin", "pass:correct horse",
                        "-nodes", "-info"], capture_output=True, text=True)
    check("PKCS#12 opens with its password and holds key, certificate and CA",
          p.returncode == 0 and "BEGIN PRIVATE KEY" in p.stdout and p.stdout.count("BEGIN CERTIFICATE") == 2,
          p.stderr[-2000:])
    p = subprocess.run(["openssl", "pkcs12", "-in", "ops-alice/ops-alice.p12", "-passin", "pass:wrong", "-nodes"],
                       capture_output=True, text=True)
    check("PKCS#12 refuses a wrong password", p.returncode != 0)
    check("PKCS#12 is mode 0600", stat.S_IMODE(os.stat("ops-alice/ops-alice.p12").st_mode) == 0o600)
    p = run(["certs", "issue", "--ca", "ca", "--name", "ops-x", "--role", "operator", "--p12", "--out", "ops-x"],
            env={k: v for k, v in os.environ.items() if k != "LONGHAUL_P12_PASSWORD"})
    check("--p12 without a password: exit 2, nothing written",
          p.returncode == 2 and "--p12 needs a password" in p.stderr and not os.path.exists("ops-x"), p.stderr)

    rng = random.Random(7)
    with open("corpus.txt", "w") as f:
        words = ["the cat", "a dog", "sees", "likes", "the moon", "some bread"]
        f.write(" ".join(rng.choice(words) for _ in range(8000)) + "\n")

    def coordinator_toml(name, bind="127.0.0.1", extra="", tls=("ca/ca.crt", "coordinator/coordinator.crt",
                                                             "coordinator/coordinator.key")):
        with open(name, "w") as f:
            f.write(f"""[coordinator]
rounds = 3
port = 0
bind = "{bind}"
allowed_sites = ["site-a", "site-b"]
allowed_operators = ["ops-alice"]
start_sites = 2
{extra}
[tls]
ca_cert = "{tls[0]}"
cert = "{tls[1]}"
key = "{tls[2]}"
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
vocab_size = 256
[sync]
inner_steps = 2
min_sites = 1
[data]
path = ""
""")
        return os.path.join(work, name)

    def site_toml(name, site_id, port, tls, extra=""):
        with open(name, "w") as f:
            f.write(f"""[site]
id = "{site_id}"
coordinator = "wss://127.0.0.1:{port}/v1/ws"
connect_timeout_s = 10
reconnect_max_s = 2
{extra}
[tls]
ca_cert = "{tls[0]}"
cert = "{tls[1]}"
key = "{tls[2]}"
[data]
path = "corpus.txt"
[train]
steps = 10
batch_size = 2
threads = 1
""")
        return os.path.join(work, name)

    def last_line(text):
        lines = [l for l in text.strip().splitlines() if l.strip()]
        return lines[-1] if lines else ""

    def clean(text):
        """User-facing lines carry no Boost source locations or function signatures."""
        return not any(s in text for s in (".hpp:", "boost/", " in function ", "asio.ssl:", "beast.http:"))

    # ---- §2: TLS files are checked before anything is written
    os.chmod("coordinator/coordinator.key", 0o644)
    p = run(["coordinator", "--config", coordinator_toml("c-badkey.toml"), "--run-dir", "run-badkey"])
    key_path = os.path.join(work, "coordinator/coordinator.key")
    check("coordinator: key readable by others -> exit 2 naming tls.key and the path, no state",
          p.returncode == 2 and f"key 'tls.key' = '{key_path}'" in p.stderr and "chmod 600" in p.stderr
          and not os.path.exists("run-badkey"), p.stderr)
    os.chmod("coordinator/coordinator.key", 0o600)
    p = run(["coordinator", "--config", coordinator_toml("c-noca.toml", tls=("nope/ca.crt", "coordinator/coordinator.crt",
                                                                             "coordinator/coordinator.key")),
             "--run-dir", "run-noca"])
    check("coordinator: missing CA file -> exit 2 naming tls.ca_cert, no coordinator.ckpt / metrics.jsonl",
          p.returncode == 2 and "key 'tls.ca_cert'" in p.stderr and "does not exist" in p.stderr
          and not os.path.exists("run-noca/coordinator.ckpt") and not os.path.exists("run-noca/metrics.jsonl"),
          p.stderr)
    p = run(["coordinator", "--config", coordinator_toml("c-mismatch.toml", tls=(
        "ca/ca.crt", "coordinator/coordinator.crt", "site-a/site-a.key")), "--run-dir", "run-mismatch"])
    check("coordinator: key of another certificate -> exit 2, no state",
          p.returncode == 2 and "does not match the certificate in tls.cert" in p.stderr
          and not os.path.exists("run-mismatch"), p.stderr)
    p = run(["coordinator", "--config", coordinator_toml("c-dash.toml", extra='dashboard_bind = "0.0.0.0:8080"'),
             "--run-dir", "run-dash"])
    check("coordinator: non-loopback dashboard_bind -> exit 2 naming the key, no state",
          p.returncode == 2 and "coordinator.dashboard_bind" in p.stderr and "loopback" in p.stderr
          and not os.path.exists("run-dash"), p.stderr)

    # ---- the coordinator the sites below dial (loopback bind; its certificate names other hosts)
    clog = open("coordinator.log", "w")
    coord = subprocess.Popen([lh, "coordinator", "--config",
                              coordinator_toml("coordinator.toml", extra='dashboard_bind = "127.0.0.1:0"'),
                              "--run-dir", "run-coord"], stdout=clog, stderr=subprocess.STDOUT)
    port = dash = 0
    for _ in range(600):
        if os.path.exists("run-coord/port") and os.path.exists("run-coord/dashboard_port"):
            port = int(open("run-coord/port").read())
            dash = int(open("run-coord/dashboard_port").read())
            break
        if coord.poll() is not None:
            break
        time.sleep(0.1)
    if not port:
        sys.exit("coordinator did not start:\n" + open("coordinator.log").read())
    clog_text = open("coordinator.log").read()
    check("coordinator bound to loopback with a certificate for other hosts warns at start",
          "coordinator.bind = 127.0.0.1 accepts connections from this machine only" in clog_text
          and "'coord.example'" in clog_text and "sites on other machines cannot connect" in clog_text, clog_text)

    base = f"https://127.0.0.1:{port}"

    def curl(path, tls, extra=()):
        cmd = ["curl", "-sS", "--max-time", "10", "--cacert", "ca/ca.crt", "--cert", tls + ".crt", "--key",
               tls + ".key", "-w", "\n%{http_code}"] + list(extra) + [base + path]
        p = subprocess.run(cmd, capture_output=True, text=True)
        body, _, code = p.stdout.rpartition("\n")
        return code, body, p.stderr

    code, body, err = curl("/v1/status", "ops-alice/ops-alice")
    check("operator reads /v1/status", code == "200" and '"run_id"' in body, body + err)
    code, body, err = curl("/metrics", "ops-alice/ops-alice")
    check("operator reads /metrics", code == "200", body + err)
    code, body, err = curl("/v1/ws", "ops-alice/ops-alice",
                           ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                            "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
    check("operator is refused the WebSocket with 403 and the reason",
          code == "403" and "operator identity 'ops-alice' is read-only: it cannot join rounds" in body, body + err)
    code, body, err = curl("/v1/status", "ops-bob/ops-bob")
    check("operator not on coordinator.allowed_operators gets 403 and the reason",
          code == "403" and "'ops-bob' is not on the operator allow-list" in body, body + err)
    code, body, err = curl("/v1/status", "site-c/site-c")
    check("site not on the allow-list gets 403 (not an empty reply) on HTTPS",
          code == "403" and "certificate identity 'site-c' is not on the allow-list" in body, body + err)
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{dash}/v1/status"], capture_output=True, text=True)
    check("plain-HTTP dashboard listener serves GET /v1/status", p.stdout.endswith("\n200"), p.stdout + p.stderr)
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-X", "POST", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{dash}/v1/status"], capture_output=True, text=True)
    check("plain-HTTP dashboard listener refuses POST (405)", p.stdout.endswith("\n405"), p.stdout + p.stderr)

    # ---- §1: sites that cannot succeed say why and exit 2
    site_files = ("site-a/ca.crt", "site-a/site-a.crt", "site-a/site-a.key")
    url = f"wss://127.0.0.1:{port}/v1/ws"
    cases = [
        ("identity not on the allow-list",
         site_toml("s-c.toml", "site-c", port, ("site-c/ca.crt", "site-c/site-c.crt", "site-c/site-c.key")), [],
         f"longhaul: error: site-c: cannot join {url}: the coordinator refused this identity: certificate "
         "identity 'site-c' is not on the allow-list (the coordinator's coordinator.allowed_sites must list "
         "'site-c', the CN of tls.cert"),
        ("CA file of another run",
         site_toml("s-ca2.toml", "site-a", port, ("site-a-ca2/ca.crt", "site-a-ca2/site-a.crt", "site-a-ca2/site-a.key")),
         [], f"the coordinator's certificate does not verify against the CA file '{work}/site-a-ca2/ca.crt': "
             "self-signed certificate in certificate chain; it was issued by 'Longhaul run CA' (tls.ca_cert"),
        ("name the certificate does not carry",
         site_toml("s-name.toml", "site-a", port, site_files), ["--set", "site.server_name=coord.other"],
         "the coordinator's certificate does not name 'coord.other', the name this site dialled; it names "
         "coordinator, DNS:coordinator, DNS:localhost, DNS:coord.example, IP:127.0.0.1 (site.coordinator must use"),
        ("wrong WebSocket path",
         site_toml("s-path.toml", "site-a", port, site_files), ["--set", f"site.coordinator=wss://127.0.0.1:{port}/v2/ws"],
         f"no WebSocket endpoint at wss://127.0.0.1:{port}/v2/ws (HTTP 404; check the path)"),
        ("plain HTTP where TLS is expected",
         site_toml("s-plain.toml", "site-a", port, site_files), ["--set", f"site.coordinator=wss://127.0.0.1:{dash}/v1/ws"],
         f"no TLS 1.3 session with wss://127.0.0.1:{dash}/v1/ws"),
    ]
    for name, cfg, extra, expect in cases:
        run_dir = "run-" + os.path.basename(cfg)[:-5]
        p = run(["site", "--config", cfg, "--run-dir", run_dir] + extra, timeout=120)
        out = p.stdout + p.stderr
        attempts = out.count("trying once more")
        ok = p.returncode == 2 and expect in out and attempts <= 1 and clean(out)
        check(f"site, {name}: exit 2 after <= 2 attempts with the reason ({last_line(out)[:100]}...)", ok,
              f"exit {p.returncode}, expected line containing:\n  {expect}\n--- output ---\n{out}")

    os.chmod("site-a/site-a.key", 0o640)
    p = run(["site", "--config", site_toml("s-key.toml", "site-a", port, site_files), "--run-dir", "run-s-key"])
    check("site: key readable by group -> exit 2 naming tls.key, no run dir written",
          p.returncode == 2 and "key 'tls.key'" in p.stderr and "mode 0640" in p.stderr
          and not os.path.exists("run-s-key"), p.stderr)
    os.chmod("site-a/site-a.key", 0o600)

    # ---- §1: transient failures retry with backoff and say for how long; SIGTERM stops promptly
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    dead_port = srv.getsockname()[1]
    srv.close()  # nothing listens there now
    slog = open("s-dead.log", "w")
    site = subprocess.Popen([lh, "site", "--config", site_toml("s-dead.toml", "site-a", dead_port, site_files),
                             "--run-dir", "run-dead"], stdout=slog, stderr=subprocess.STDOUT)
    text = ""
    for _ in range(200):
        time.sleep(0.1)
        text = open("s-dead.log").read()
        if text.count("unreachable for") >= 3:
            break
    check("unreachable coordinator: retried, each line says for how long and when the next try is",
          text.count("unreachable for") >= 3 and "TCP connect failed: connection refused" in text
          and "); retrying in" in text and clean(text), text)
    site.send_signal(signal.SIGTERM)
    try:
        rc = site.wait(timeout=10)
    except subprocess.TimeoutExpired:
        site.kill()
        rc = "hung"
    text = open("s-dead.log").read()
    check("SIGTERM while reconnecting: exit 0, last line names the state",
          rc == 0 and "site-a: stopped before joining a run (the coordinator was unreachable for" in last_line(text),
          f"rc {rc}\n{text}")

    # A peer that accepts TCP and never answers: SIGTERM must not wait for connect_timeout_s.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    slog = open("s-mute.log", "w")
    site = subprocess.Popen([lh, "site", "--config",
                             site_toml("s-mute.toml", "site-a", mute.getsockname()[1], site_files),
                             "--run-dir", "run-mute", "--set", "site.connect_timeout_s=300"],
                            stdout=slog, stderr=subprocess.STDOUT)
    time.sleep(2.0)  # inside the first attempt (TLS handshake waiting for the server)
    t0 = time.monotonic()
    site.send_signal(signal.SIGTERM)
    try:
        rc = site.wait(timeout=30)
    except subprocess.TimeoutExpired:
        site.kill()
        rc = "hung"
    took = time.monotonic() - t0
    mute.close()
    text = open("s-mute.log").read()
    print(f"  SIGTERM during an attempt (connect_timeout_s = 300): stopped after {took:.2f} s")
    check("SIGTERM during a connect attempt stops the site long before connect_timeout_s",
          rc == 0 and took < 30 and "stopped before joining a run" in last_line(text), f"rc {rc}, {took:.1f} s\n{text}")

    coord.send_signal(signal.SIGTERM)
    try:
        coord.wait(timeout=30)
    except subprocess.TimeoutExpired:
        coord.kill()
    clog_text = open("coordinator.log").read()
    check("the coordinator logged the refusals with peer and reason",
          "refused 'site-c'" in clog_text and "not on the allow-list" in clog_text, clog_text[-3000:])

    return check.report()


if __name__ == "__main__":
    sys.exit(main())
