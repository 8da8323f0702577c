#!/usr/bin/env python3
"""`scripts/bench-scale --quick` runs end to end (issue 13 §4): a real coordinator and two real
sites over TLS on 127.0.0.1 with a tiny model, then the eager PyTorch baseline; the table it
writes has one row with positive peak RSS for every process, two rounds' tails and the
parameter count the coordinator reported, and a timing for every upload and download.

Run by ctest as: python test_bench_scale_quick.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import json
import os
import subprocess
import sys

import lhtest


def main():
    a = lhtest.parse_args()
    work, src = a.work_dir, a.source_dir
    env = dict(os.environ, LONGHAUL=a.longhaul)
    failures = []

    p = subprocess.run([os.path.join(src, "scripts/bench-scale"), "--quick", "--out", os.path.join(work, "bench")],
                       env=env, capture_output=True, text=True, timeout=170)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:])
        return 1
    table = open(os.path.join(work, "bench", "table.md")).read()
    rows = [l for l in table.splitlines() if l.startswith("| tiny ")]
    if len(rows) != 1:
        failures.append(f"expected one 'tiny' row in table.md, got:\n{table}")
    r = json.load(open(os.path.join(work, "bench", "tiny", "result.json")))
    init = [json.loads(l) for l in open(os.path.join(work, "bench", "tiny", "coordinator", "metrics.jsonl"))
            if '"init"' in l]
    if not init or r["n"] != init[0]["parameters"]:
        failures.append(f"N = {r['n']} but the coordinator's init line says {init}")
    if r["eager_n"] <= 0 or not r["n"] * 0.9 < r["eager_n"] < r["n"] * 1.1:
        failures.append(f"the eager model has {r['eager_n']} parameters, the coordinator's {r['n']}")
    for k in ("coord", "eager"):
        if not r[k] > 50e6:  # LibTorch alone maps more than this
            failures.append(f"peak RSS {k} = {r[k]} bytes: not measured?")
    if len(r["sites"]) != 2 or not all(x > 50e6 for x in r["sites"]):
        failures.append(f"site peak RSS {r['sites']}")
    if len(r["tails"]) != 2 or not all(t >= 0 for t, _ in r["tails"]):
        failures.append(f"round tails {r['tails']}: expected one per round (2), each >= 0")
    if len(r["up"]) != 4 or len(r["down"]) != 4:  # 2 sites x 2 rounds
        failures.append(f"upload/download timings {r['up']} / {r['down']}: expected 4 each")
    if not r["bytes_up"] > 0:
        failures.append("no bytes uploaded")

    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
