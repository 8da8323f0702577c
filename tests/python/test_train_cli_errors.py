#!/usr/bin/env python3
"""`longhaul train` rejects malformed configs and corpora with a clear message naming the
file/key/path, exit status 2, no stack trace, and no model written.

Run by ctest as: python test_train_cli_errors.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import os
import struct
import subprocess
import sys

import lhtest

TINY = """[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
vocab_size = 256
[data]
path = "{corpus}"
[train]
steps = 2
batch_size = 2
threads = 1
"""


def main():
    a = lhtest.parse_args()
    work = a.work_dir
    good_corpus = os.path.join(a.source_dir, "tests/data/tiny_corpus")

    def path(name):
        return os.path.join(work, name)

    def write(name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(path(name), mode) as f:
            f.write(data)
        return path(name)

    def config(name, corpus=good_corpus, extra=""):
        return write(name, TINY.format(corpus=corpus) + extra)

    write("empty.txt", "")
    write("short.txt", "only twelve!")
    write("vocab.bin", struct.pack("<40H", *([7] * 39 + [300])))
    write("odd.bin", b"\x01\x02\x03")
    gpu = subprocess.run([sys.executable, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"]).returncode == 0

    # (name, config file, extra args, substrings the message must contain)
    cases = [
        ("unknown key", config("c1.toml", extra="stepz = 3\n"), [],
         ["c1.toml", "unknown key 'train.stepz'"]),
        ("wrong type", config("c2.toml", extra="[optim]\nlr = \"fast\"\n"), [],
         ["c2.toml", "key 'optim.lr' = \"fast\"", "expected a number"]),
        ("out of range", config("c3.toml"), ["--set", "train.batch_size=0"],
         ["c3.toml", "key 'train.batch_size' = 0", "expected an integer in [1,"]),
        ("bad --set", config("c4.toml"), ["--set", "train.steps"],
         ["--set 'train.steps'", "expected section.key=value"]),
        ("unknown --set key", config("c5.toml"), ["--set", "model.layers=3"],
         ["c5.toml", "unknown key 'model.layers'"]),
        ("n_embd not divisible by n_head", config("c6.toml"), ["--set", "model.n_head=3"],
         ["c6.toml", "key 'model.n_embd' = 16", "multiple of model.n_head = 3"]),
        ("missing corpus path", config("c7.toml", corpus=path("no/such/dir")), [],
         [path("no/such/dir"), "does not exist"]),
        ("empty corpus", config("c8.toml", corpus=path("empty.txt")), [],
         ["empty.txt", "corpus is empty"]),
        ("corpus shorter than block_size+1", config("c9.toml", corpus=path("short.txt")), [],
         ["short.txt", "shorter than model.block_size + 1 = 17"]),
        ("token id >= vocab_size", config("c10.toml", corpus=path("vocab.bin")), [],
         ["vocab.bin", "token 39 has id 300 >= model.vocab_size = 256"]),
        ("odd-sized .bin", config("c11.toml", corpus=path("odd.bin")), [],
         ["odd.bin", "even size"]),
        ("glob matches nothing", config("c12.toml", corpus=path("*.parquet")), [],
         ["*.parquet", "no corpus files match"]),
        ("bad device", config("c13.toml"), ["--set", "train.device=cuda:7"],
         ["c13.toml", "key 'train.device' = \"cuda:7\""]),
        ("unknown device", config("c14.toml"), ["--set", "train.device=tpu"],
         ["c14.toml", "key 'train.device' = \"tpu\""]),
        ("missing config file", path("nope.toml"), [], ["nope.toml", "config file not found"]),
        ("TOML syntax error", write("c16.toml", "[model\nn_layer = 2\n"), [],
         ["c16.toml:1:", "TOML syntax error"]),
        ("missing data.path", write("c17.toml", "[model]\nn_layer = 1\n"), [],
         ["c17.toml", "key 'data.path'"]),
        ("decay before warmup", config("c18.toml", extra="[optim]\nwarmup_steps = 10\ndecay_steps = 5\n"), [],
         ["c18.toml", "key 'optim.decay_steps' = 5"]),
    ]
    if not gpu:
        cases.append(("cuda without a GPU", config("c19.toml"), ["--set", "train.device=cuda"],
                      ["c19.toml", "key 'train.device' = \"cuda\""]))

    failures = []
    for name, cfg, extra, expect in cases:
        run_dir = path("run-" + name.replace(" ", "_").replace("/", "_"))
        p = subprocess.run([a.longhaul, "train", "--config", cfg, "--run-dir", run_dir] + extra,
                           capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        problems = []
        if p.returncode != 2:
            problems.append(f"exit status {p.returncode}, expected 2")
        for s in expect:
            if s not in out:
                problems.append(f"message lacks {s!r}")
        if "terminate called" in out or "Exception raised from" in out:
            problems.append("stack trace / crash in output")
        if os.path.exists(os.path.join(run_dir, "model.safetensors")):
            problems.append("a model was written")
        status = "ok" if not problems else "FAIL"
        print(f"[{status}] {name}: exit {p.returncode}: {out.strip().splitlines()[-1] if out.strip() else ''}")
        if problems:
            failures.append((name, problems, out))

    # A damaged checkpoint on --resume: clear error naming the file, exit 2.
    cfg = config("c20.toml")
    run_dir = path("run-damaged")
    p = subprocess.run([a.longhaul, "train", "--config", cfg, "--run-dir", run_dir], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        failures.append(("setup run for damaged checkpoint", [f"exit {p.returncode}"], p.stderr))
    else:
        ckpt = os.path.join(run_dir, "checkpoints", "step-00000002.ckpt")
        with open(ckpt, "r+b") as f:
            f.truncate(os.path.getsize(ckpt) - 7)
        p = subprocess.run([a.longhaul, "train", "--config", cfg, "--run-dir", run_dir, "--resume",
                            "--set", "train.steps=4"], capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        ok = p.returncode == 2 and "step-00000002.ckpt" in out and "truncated or damaged" in out
        print(f"[{'ok' if ok else 'FAIL'}] damaged checkpoint on --resume: exit {p.returncode}: {out.strip().splitlines()[-1] if out.strip() else ''}")
        if not ok:
            failures.append(("damaged checkpoint", ["bad exit or message"], out))

    for name, problems, out in failures:
        print(f"\nFAILED {name}: {'; '.join(problems)}\n--- output ---\n{out}")
    print(f"\n{len(cases) + 1 - len(failures)}/{len(cases) + 1} malformed inputs rejected correctly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
