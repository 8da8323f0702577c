#!/usr/bin/env python3
"""`longhaul train` on several devices and as a 2-process site gives the losses of one device.

  1. one device (reference);
  2. `train.devices` = three 1-thread CPU workers, one emulated 2x slower (uneven split,
     ragged micro-batches): same losses to 1e-5, every step line carries the split;
  3. two real processes (`--rank 0/1 --world-size 2 --rendezvous 127.0.0.1:PORT`, loopback
     Gloo), rank 1 with two devices: same losses to 1e-5, and both ranks export bitwise
     identical models (their replicas stayed identical);
  4. a missing rank: rank 0 alone fails within --rank-timeout-ms, exit 2, naming rank 1.

Run by ctest as: python test_train_multi_device.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

CONFIG = """[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
vocab_size = 256
[data]
path = "{corpus}"
[optim]
warmup_steps = 1
grad_clip = 1.0
[train]
steps = 4
batch_size = 3
grad_accum = 2
threads = 1
log_every = 1
eval_every = 0
eval_batches = 1
verify_every = 1
{extra}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir):
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j["event"] == "step":
                out.append(j)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longhaul", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    a = ap.parse_args()
    work = os.path.abspath(a.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    corpus = os.path.join(os.path.abspath(a.source_dir), "tests/data/tiny_corpus")
    failures = []

    def check(cond, what, detail=""):
        print(("ok   " if cond else "FAIL ") + what + ("" if cond or not detail else "\n     " + detail))
        if not cond:
            failures.append(what)

    def config(name, extra=""):
        p = os.path.join(work, name)
        with open(p, "w") as f:
            f.write(CONFIG.format(corpus=corpus, extra=extra))
        return p

    def train(cfg, run_dir, *extra, wait=True, log=None):
        cmd = [a.longhaul, "train", "--config", cfg, "--run-dir", os.path.join(work, run_dir), *extra]
        err = open(os.path.join(work, (log or run_dir) + ".err"), "w")
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        if wait:
            p.wait(timeout=300)
        return p

    def stderr_of(run_dir):
        with open(os.path.join(work, run_dir + ".err")) as f:
            return f.read()

    # 1. reference: one device
    p = train(config("one.toml"), "one")
    check(p.returncode == 0, "one device trains (exit 0)")
    ref = losses(os.path.join(work, "one"))
    check(len(ref) == 4, "one device: 4 step lines")

    # 2. three devices in one process
    multi = config("multi.toml", 'devices = [{ device = "cpu", max_micro_batch = 2 }, '
                                 '{ device = "cpu", slowdown = 2.0, max_micro_batch = 1 }, { device = "cpu" }]')
    p = train(multi, "multi")
    check(p.returncode == 0, "three devices train (exit 0)", stderr_of("multi")[-500:])
    got = losses(os.path.join(work, "multi"))
    check(len(got) == len(ref) and all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(got, ref)),
          "three devices: losses equal one device's to 1e-5: %s vs %s" % ([g["loss"] for g in got], [r["loss"] for r in ref]))
    check(all("devices" in g and sum(g["devices"]["split"]) == 6 and len(g["devices"]["rates"]) == 3 for g in got),
          "three devices: every step line has the split (summing to the 6-sequence batch) and 3 rates")

    # 3. two processes
    port = free_port()
    rdv = "127.0.0.1:%d" % port
    two1 = config("rank1.toml", 'devices = [{ device = "cpu" }, { device = "cpu", slowdown = 2.0 }]')
    p0 = train(config("rank0.toml"), "two", "--rank", "0", "--world-size", "2", "--rendezvous", rdv,
               "--rank-timeout-ms", "30000", wait=False, log="two-r0")
    p1 = train(two1, "two", "--rank", "1", "--world-size", "2", "--rendezvous", rdv,
               "--rank-timeout-ms", "30000", wait=False, log="two-r1")
    p1.wait(timeout=300)
    p0.wait(timeout=300)
    check(p0.returncode == 0 and p1.returncode == 0, "2-process site trains (exit 0, 0)",
          "rank 0 (exit %s): %s\n     rank 1 (exit %s): %s" % (p0.returncode, stderr_of("two-r0")[-400:],
                                                             p1.returncode, stderr_of("two-r1")[-400:]))
    if p0.returncode == 0 and p1.returncode == 0:
        r0 = losses(os.path.join(work, "two"))
        r1 = losses(os.path.join(work, "two", "rank-1"))
        check(len(r0) == len(ref) and all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(r0, ref)),
              "2-process site: losses equal the 1-process site's to 1e-5: %s vs %s" % ([g["loss"] for g in r0], [r["loss"] for r in ref]))
        check([x["loss"] for x in r0] == [x["loss"] for x in r1], "2-process site: both ranks log identical losses")
        check(all(sum(g["devices"]["rank_split"]) == 6 for g in r0), "2-process site: rank split sums to the batch")
        with open(os.path.join(work, "two", "model.safetensors"), "rb") as f0, \
                open(os.path.join(work, "two", "rank-1", "model.safetensors"), "rb") as f1:
            check(f0.read() == f1.read(), "2-process site: both ranks end with bitwise identical parameters")

    # 4. a missing rank
    t0 = time.time()
    p = train(config("alone.toml"), "alone", "--rank", "0", "--world-size", "2", "--rendezvous",
              "127.0.0.1:%d" % free_port(), "--rank-timeout-ms", "1500")
    took = time.time() - t0
    err = stderr_of("alone")
    check(p.returncode == 2, "missing rank: exit status 2 (got %s)" % p.returncode)
    check("rank 1 of 2 did not arrive" in err and "within 1500 ms" in err, "missing rank: the error names rank 1",
          err.strip()[-300:])
    check(took < 60, "missing rank: failed in %.1f s, not a hang" % took)

    if failures:
        print("FAILED: %d check(s)" % len(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
