#!/usr/bin/env python3
"""`longhaul train` on several devices and as a 2-process site gives the losses of one device.

  1. one device (reference);
  2. `train.devices` = three 1-thread CPU workers, one emulated 2x slower (uneven split,
     ragged micro-batches): same losses to 1e-5, every step line carries the split;
  3. two real processes (`--rank 0/1 --world-size 2 --rendezvous 127.0.0.1:PORT`, loopback
     Gloo), rank 1 with two devices: same losses to 1e-5, and both ranks export bitwise
     identical models (their replicas stayed identical);
  4. a missing rank: rank 0 alone fails within --rank-timeout-ms, exit 2, naming rank 1;
  5. multi-process --resume (the site of 3): stopped after step 2 and resumed, it logs the
     uninterrupted run's losses; when rank 1 lost its newest checkpoint (as if stopped between
     the ranks' writes of one step), both ranks continue from the newest step both have, with
     the same losses; when rank 1 has none, both fail (exit 2) naming rank 1.

Run by ctest as: python test_train_multi_device.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import lhtest

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
    a = lhtest.parse_args()
    work = a.work_dir
    corpus = os.path.join(a.source_dir, "tests/data/tiny_corpus")
    check = lhtest.Checks()

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
    check("one device trains (exit 0)", p.returncode == 0)
    ref = losses(os.path.join(work, "one"))
    check("one device: 4 step lines", len(ref) == 4)

    # 2. three devices in one process
    multi = config("multi.toml", 'devices = [{ device = "cpu", max_micro_batch = 2 }, '
                                 '{ device = "cpu", slowdown = 2.0, max_micro_batch = 1 }, { device = "cpu" }]')
    p = train(multi, "multi")
    check("three devices train (exit 0)", p.returncode == 0, stderr_of("multi")[-500:])
    got = losses(os.path.join(work, "multi"))
    check("three devices: losses equal one device's to 1e-5: %s vs %s" % ([g["loss"] for g in got], [r["loss"] for r in ref]),
          len(got) == len(ref) and all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(got, ref)))
    check("three devices: every step line has the split (summing to the 6-sequence batch) and 3 rates",
          all("devices" in g and sum(g["devices"]["split"]) == 6 and len(g["devices"]["rates"]) == 3 for g in got))

    # 3. two processes
    rank0 = config("rank0.toml")
    rank1 = config("rank1.toml", 'devices = [{ device = "cpu" }, { device = "cpu", slowdown = 2.0 }]')

    def two_ranks(run_dir, *extra):
        """Runs ranks 0 and 1 of the site (rank 1 with two devices); returns (exit 0, exit 1)."""
        rdv = "127.0.0.1:%d" % free_port()
        ps = [train(cfg, run_dir, "--rank", str(r), "--world-size", "2", "--rendezvous", rdv,
                    "--rank-timeout-ms", "30000", *extra, wait=False, log="%s-r%d" % (run_dir, r))
              for r, cfg in enumerate((rank0, rank1))]
        for p in ps:
            p.wait(timeout=300)
        return ps[0].returncode, ps[1].returncode

    def both_ok(codes, run_dir, what):
        check(what + " (exit 0, 0)", codes == (0, 0),
              "rank 0 (exit %s): %s\n     rank 1 (exit %s): %s" % (codes[0], stderr_of(run_dir + "-r0")[-400:],
                                                                 codes[1], stderr_of(run_dir + "-r1")[-400:]))
        return codes == (0, 0)

    def same_losses(got, want):
        return len(got) == len(want) and all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(got, want))

    r0 = []
    if both_ok(two_ranks("two"), "two", "2-process site trains"):
        r0 = losses(os.path.join(work, "two"))
        r1 = losses(os.path.join(work, "two", "rank-1"))
        check("2-process site: losses equal the 1-process site's to 1e-5: %s vs %s" % ([g["loss"] for g in r0], [r["loss"] for r in ref]),
              same_losses(r0, ref))
        check("2-process site: both ranks log identical losses", [x["loss"] for x in r0] == [x["loss"] for x in r1])
        check("2-process site: rank split sums to the batch", all(sum(g["devices"]["rank_split"]) == 6 for g in r0))
        with open(os.path.join(work, "two", "model.safetensors"), "rb") as f0, \
                open(os.path.join(work, "two", "rank-1", "model.safetensors"), "rb") as f1:
            check("2-process site: both ranks end with bitwise identical parameters", f0.read() == f1.read())

    # 4. a missing rank
    t0 = time.time()
    p = train(config("alone.toml"), "alone", "--rank", "0", "--world-size", "2", "--rendezvous",
              "127.0.0.1:%d" % free_port(), "--rank-timeout-ms", "1500")
    took = time.time() - t0
    err = stderr_of("alone")
    check("missing rank: exit status 2 (got %s)" % p.returncode, p.returncode == 2)
    check("missing rank: the error names rank 1", "rank 1 of 2 did not arrive" in err and "within 1500 ms" in err,
          err.strip()[-300:])
    check("missing rank: failed in %.1f s, not a hang" % took, took < 60)

    # 5. multi-process --resume. Stopping after step 2 = a 2-step run on the 4-step run's
    #    schedule (optim.decay_steps = 4 explicitly; it defaults to train.steps).
    if r0:
        ckpts = lambda d: sorted(os.listdir(os.path.join(work, d, "checkpoints")))
        both_ok(two_ranks("resumed", "--set", "train.steps=2", "--set", "optim.decay_steps=4"), "resumed",
                "resume: the first 2 steps")
        codes = two_ranks("resumed", "--resume")
        if both_ok(codes, "resumed", "resume: steps 3-4 after --resume"):
            got = losses(os.path.join(work, "resumed"))
            check("resume: rank 0 logs the uninterrupted run's losses: %s vs %s" % ([g["loss"] for g in got], [g["loss"] for g in r0]),
                  same_losses(got, r0) and [g["step"] for g in got] == [1, 2, 3, 4])
            check("resume: so does rank 1", same_losses(losses(os.path.join(work, "resumed", "rank-1")), r0))
            check("resume: rank 1 resumed from its own step-2 checkpoint",
                  "resumed from" in stderr_of("resumed-r1") and "at step 2" in stderr_of("resumed-r1"),
                  stderr_of("resumed-r1")[-300:])
            check("resume: rank 1 kept its step-2 and step-4 checkpoints: %s" % ckpts("resumed/rank-1"),
                  ckpts("resumed/rank-1") == ["step-00000002.ckpt", "step-00000004.ckpt"])

            # rank 1 stopped before writing step 4: both continue from step 2
            os.remove(os.path.join(work, "resumed", "rank-1", "checkpoints", "step-00000004.ckpt"))
            codes = two_ranks("resumed", "--resume")
            if both_ok(codes, "resumed", "resume after rank 1 lost its newest checkpoint"):
                check("resume: rank 0 falls back to step 2 and says so",
                      "continuing from step 2, the newest step every rank has" in stderr_of("resumed-r0"),
                      stderr_of("resumed-r0")[-400:])
                check("resume: from step 2 again, the same losses as the uninterrupted run",
                      same_losses(losses(os.path.join(work, "resumed")), r0))

            # rank 1 has no checkpoint at all: both fail, naming it
            shutil.rmtree(os.path.join(work, "resumed", "rank-1", "checkpoints"))
            codes = two_ranks("resumed", "--resume")
            check("resume: rank 1 without checkpoints: both ranks exit 2 (got %s)" % (codes,), codes == (2, 2))
            for r in (0, 1):
                err = stderr_of("resumed-r%d" % r)
                check("resume: rank %d's error names rank 1" % r, "--resume: rank(s) 1 have no checkpoint" in err,
                      err.strip()[-300:])

    return check.report()


if __name__ == "__main__":
    sys.exit(main())
