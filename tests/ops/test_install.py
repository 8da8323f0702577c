#!/usr/bin/python3
"""`cmake --install` gives a layout that runs on a machine that never built it (#12 §5, #14 §5).

Installs the build into WORK_DIR/prefix (once: later runs only copy what changed), checks the
layout (binary, bundled LibTorch libraries, example configs, systemd units, sysusers entry)
and the binary's RUNPATH ($ORIGIN/../lib/longhaul, nothing pointing into a venv); then, as
the unprivileged user `nobody` with an empty environment (no venv, no LD_LIBRARY_PATH, and
/root, where the build user's venv lives, unreadable to it), runs `longhaul --version` and a
short `longhaul train`; and runs `systemd-analyze verify` on the units when systemd-analyze
is present.

  test_install.py --longhaul BIN --source-dir DIR --work-dir DIR
"""
import os
import pwd
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lhtest import fail, parse_args  # noqa: E402


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


def as_nobody(cmd, cwd):
    """cmd as nobody:nogroup with an empty environment."""
    env = ["env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8"]
    if os.getuid() == 0:
        return run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + env + cmd, cwd=cwd)
    return run(env + cmd, cwd=cwd)  # not root: already unprivileged


def main():
    a = parse_args(fresh=False)  # the prefix of the previous run: cmake --install copies only what changed
    build, work = a.build_dir, a.work_dir
    prefix = os.path.join(work, "prefix")

    r = run(["cmake", "--install", build, "--prefix", prefix])
    if r.returncode != 0:
        fail(f"cmake --install exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")

    # ---- layout
    expect = ["bin/longhaul", "bin/longhaul-plot-run", "lib/longhaul/libtorch_cpu.so", "lib/longhaul/libc10.so",
              "share/longhaul/examples/coordinator.toml", "share/longhaul/examples/site-a.toml",
              "lib/systemd/system/longhaul-coordinator.service", "lib/systemd/system/longhaul-site@.service",
              "lib/sysusers.d/longhaul.conf", "share/doc/longhaul/README.md"]
    for rel in expect:
        if not os.path.exists(os.path.join(prefix, rel)):
            fail(f"{rel} missing under {prefix}")
    binary = os.path.join(prefix, "bin", "longhaul")
    dyn = run(["readelf", "-d", binary]).stdout
    runpaths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.*)\]", dyn)
    if runpaths != ["$ORIGIN/../lib/longhaul"]:
        fail(f"RUNPATH of the installed binary is {runpaths}, expected ['$ORIGIN/../lib/longhaul']")
    libdir = os.path.join(prefix, "lib", "longhaul")
    for need in re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dyn):
        system = any(os.path.exists(os.path.join(d, need)) for d in
                     ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib"))
        if not system and not os.path.exists(os.path.join(libdir, need)):
            fail(f"{need} (NEEDED by bin/longhaul) is neither a system library nor in lib/longhaul")
    ldd = run(["env", "-i", "ldd", binary]).stdout
    if "not found" in ldd or ".cache/longhaul/venv" in ldd:
        fail("the installed binary does not resolve its libraries from the prefix alone:\n" + ldd)

    # ---- unprivileged user, no venv: --version and a short train
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        fail("no user 'nobody' on this machine")
    v = as_nobody([binary, "--version"], cwd="/")
    if v.returncode != 0 or "longhaul" not in v.stdout:
        fail(f"`longhaul --version` as nobody: exit {v.returncode}\n{v.stdout}\n{v.stderr}")
    scratch = os.path.join(work, "nobody")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    with open(os.path.join(scratch, "corpus.txt"), "w") as f:
        f.write("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(3000)))
    os.chmod(scratch, 0o777)
    cfg = os.path.join(prefix, "share", "longhaul", "examples", "train-local.toml")
    t = as_nobody([binary, "train", "--config", cfg, "--run-dir", os.path.join(scratch, "run"),
                   "--set", "data.path=" + os.path.join(scratch, "corpus.txt"),
                   "--set", "train.steps=4", "--set", "train.batch_size=2", "--set", "train.threads=1",
                   "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2",
                   "--set", "optim.warmup_steps=1", "--set", "optim.decay_steps=4",
                   "--set", "train.eval_every=4", "--set", "train.eval_batches=1",
                   "--set", "train.checkpoint_every=4"], cwd=scratch)
    if t.returncode != 0:
        fail(f"`longhaul train` as nobody from the install: exit {t.returncode}\n{t.stdout[-3000:]}\n{t.stderr[-3000:]}")
    if not os.path.exists(os.path.join(scratch, "run", "metrics.jsonl")):
        fail("the installed `longhaul train` wrote no metrics.jsonl")
    print("installed binary ran as nobody: --version and a 4-step train")

    # ---- systemd units
    sa = shutil.which("systemd-analyze")
    if sa:
        unit_dir = os.path.join(work, "units")
        shutil.rmtree(unit_dir, ignore_errors=True)
        os.makedirs(unit_dir)
        for u in ("longhaul-coordinator.service", "longhaul-site@.service"):
            text = open(os.path.join(prefix, "lib", "systemd", "system", u)).read()
            # verify checks that ExecStart's binary exists: point it at this prefix.
            text = text.replace("/usr/bin/longhaul", binary)
            name = u.replace("@.service", "@a.service")
            with open(os.path.join(unit_dir, name), "w") as f:
                f.write(text)
        units = [os.path.join(unit_dir, n) for n in sorted(os.listdir(unit_dir))]
        r = run([sa, "verify", "--man=no"] + units, timeout=120)
        # verify exits 0 even for unknown keys (it only prints them): any line about our units fails.
        said = [l for l in (r.stdout + r.stderr).splitlines() if unit_dir in l or "longhaul" in l]
        if r.returncode != 0 or said:
            fail(f"systemd-analyze verify: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        print("systemd-analyze verify: clean")
    else:
        print("systemd-analyze not present: units not verified")
    print("ok")


if __name__ == "__main__":
    main()
