"""scripts/bench-inner: tokens/s of `longhaul train` against an equivalent eager PyTorch loop.

Both sides train the same nanoGPT model (same config, batch, threads, AdamW with nanoGPT's
groups, grad clipping, the same byte-level corpus and random windows) in this one invocation,
alternating runs; tokens/s = batch tokens / median wall time of the steps after `--warmup`
(the median resists the other tenants of a shared machine); the reported ratio is the median
over back-to-back (longhaul, PyTorch) run pairs. Prints the ratio (target >= 1.10x), the share of longhaul's loop time outside
LibTorch calls (target <= 3%), and the cores each process kept busy (CPU time / wall time).
`--batch-sizes "4 8 16 32"` repeats all of it per batch size. Writes a markdown table (a row per
batch size) to OUT/table.md and beside it tokens_per_s.png (tokens/s of both sides and their
ratio against the batch size, every run a dot); OUT = --out (default runs/bench-inner-<utc>).
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- nanoGPT (karpathy/nanoGPT model.py, bias=True, dropout 0), written out ----
class Block(nn.Module):
    def __init__(s, C, H):
        super().__init__()
        s.ln_1, s.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        s.c_attn, s.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        s.c_fc, s.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        s.H = H

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.H, C // s.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x))))


class GPT(nn.Module):
    def __init__(s, L, H, C, T, V):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        s.h = nn.ModuleList([Block(C, H) for _ in range(L)])
        s.ln_f = nn.LayerNorm(C)
        s.lm_head = nn.Linear(C, V, bias=False)
        s.lm_head.weight = s.wte.weight
        for n, p in s.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L) if n.endswith("proj.weight") else 0.02)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(s, idx, targets):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in s.h:
            x = b(x)
        logits = s.lm_head(s.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def corpus_bytes(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if not f.startswith(".") and not f.endswith(".dat") and not os.path.islink(os.path.join(path, f)))
    data = b"".join(open(f, "rb").read() for f in files)
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


def torch_run(a, steps):
    """The eager PyTorch loop; returns (tokens/s over steps after warmup, cpu_s, wall_s)."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    data = corpus_bytes(a.corpus)
    model = GPT(a.n_layer, a.n_head, a.n_embd, a.block_size, 256)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(1337)
    B, T = a.batch_size, a.block_size
    step_times = []
    for step in range(steps):
        if step == a.warmup:
            t_start, c_start = time.perf_counter(), time.process_time()
        t0 = time.perf_counter()
        lr = 6e-4 * min(1.0, (step + 1) / 10)
        for g in opt.param_groups:
            g["lr"] = lr
        ix = rng.integers(0, len(data) - T - 1, B)
        x = torch.stack([torch.from_numpy(data[i:i + T]) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T]) for i in ix])
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if step >= a.warmup:
            step_times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    return B * T / statistics.median(step_times), time.process_time() - c_start, wall


def longhaul_run(a, steps, work):
    run_dir = os.path.join(work, f"run-{time.monotonic_ns()}")
    cmd = [a.longhaul, "train", "--config", os.path.join(a.source_dir, "configs/train-local.toml"),
           "--run-dir", run_dir]
    for k, v in [("model.n_layer", a.n_layer), ("model.n_head", a.n_head), ("model.n_embd", a.n_embd),
                 ("model.block_size", a.block_size), ("data.path", f'"{a.corpus}"'), ("data.val_fraction", 0.0001),
                 ("train.steps", steps), ("train.batch_size", a.batch_size), ("train.threads", a.threads),
                 ("train.log_every", 1), ("train.eval_every", 0), ("train.eval_batches", 1),
                 ("train.checkpoint_every", 0), ("optim.warmup_steps", 10), ("optim.decay_steps", 100000)]:
        cmd += ["--set", f"{k}={v}"]
    w0 = time.perf_counter()
    log = os.path.join(work, "longhaul.log")
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=f)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - w0
    err = open(log).read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"longhaul failed:\n{err}")
    lines = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    st = {l["step"]: l for l in lines if l["event"] == "step"}
    # Median of per-step rates: robust to the other tenants of a shared machine.
    rate = statistics.median(st[s]["tokens_per_s"] for s in range(a.warmup + 1, steps + 1))
    m = re.search(r"outside LibTorch calls: ([0-9.eE+-]+)%", err)
    overhead = float(m.group(1)) if m else float("nan")
    m = re.search(r"cores busy during steps: ([0-9.eE+-]+)", err)
    cores = float(m.group(1)) if m else float("nan")
    return rate, cores, wall, overhead


def measure(a, work):
    """Alternating (longhaul, PyTorch) runs at a.batch_size; prints the block, returns the runs."""
    lh, py = [], []
    for _ in range(a.repeats):
        lh.append(longhaul_run(a, a.steps, work))
        py.append(torch_run(a, a.steps))
    best_lh, best_py = max(lh), max(py)
    # Each run pair is back to back, so its ratio sees (nearly) the same machine load.
    pair_ratios = sorted(x[0] / y[0] for x, y in zip(lh, py))
    print(f"config: n_layer={a.n_layer} n_head={a.n_head} n_embd={a.n_embd} block={a.block_size} "
          f"batch={a.batch_size} threads={a.threads} steps={a.steps} (first {a.warmup} not timed), "
          f"torch {torch.__version__}, {os.cpu_count()} cores")
    print(f"longhaul train : {best_lh[0]:10.0f} tokens/s   (runs: {', '.join(f'{x[0]:.0f}' for x in lh)})")
    print(f"eager PyTorch  : {best_py[0]:10.0f} tokens/s   (runs: {', '.join(f'{x[0]:.0f}' for x in py)})")
    print(f"ratio          : {statistics.median(pair_ratios):.3f}x median of back-to-back pairs "
          f"({', '.join(f'{r:.2f}' for r in pair_ratios)}); best vs best {best_lh[0] / best_py[0]:.3f}x"
          f"   (target >= 1.10x)")
    print(f"longhaul loop time outside LibTorch calls: {best_lh[3]:.2f}%   (target <= 3%)")
    print(f"cores busy during steps (CPU time / wall): longhaul {best_lh[1]:.2f}, "
          f"PyTorch {best_py[1] / best_py[2]:.2f} of {a.threads} threads", flush=True)
    return dict(lh=[x[0] for x in lh], py=[x[0] for x in py], ratios=pair_ratios, outside=best_lh[3],
                cores_lh=best_lh[1], cores_py=best_py[1] / best_py[2])


def table(a, results):
    """One markdown row per batch size."""
    rows = [f"`scripts/bench-inner` — GPT {a.n_layer} layers, {a.n_head} heads, {a.n_embd} wide, block "
            f"{a.block_size}, {a.threads} threads, {a.steps} steps (first {a.warmup} not timed), "
            f"{a.repeats} alternating run pairs per batch size, torch {torch.__version__}, {os.cpu_count()} cores.",
            "", "| batch | longhaul tokens/s, per run | eager PyTorch tokens/s, per run | ratio, median of pairs "
            "(pairs) | outside LibTorch | cores busy (longhaul / PyTorch) |",
            "| ---: | --- | --- | --- | ---: | --- |"]
    for b, r in sorted(results.items()):
        rows.append(f"| {b} | {', '.join(f'{x:.0f}' for x in r['lh'])} | {', '.join(f'{x:.0f}' for x in r['py'])} | "
                    f"**{statistics.median(r['ratios']):.2f}x** ({', '.join(f'{x:.2f}' for x in r['ratios'])}) | "
                    f"{r['outside']:.2f}% | {r['cores_lh']:.2f} / {r['cores_py']:.2f} |")
    return "\n".join(rows) + "\n"


def plot(a, out, results):
    """tokens/s of both sides and the pair ratio against the batch size (scripts/lib/plot.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from plot import chart
    bs = sorted(results)

    def side(label, key, color):
        runs = [(b, v) for b in bs for v in results[b][key]]
        return [{"label": f"{label} (median)", "x": bs, "y": [statistics.median(results[b][key]) for b in bs],
                 "style": "o-", "color": color},
                {"x": [b for b, _ in runs], "y": [v for _, v in runs], "style": ".", "color": color}]
    ratios = [(b, r) for b in bs for r in results[b]["ratios"]]
    batch_axis = {"xlabel": "batch size (sequences of %d tokens)" % a.block_size, "logx": 2, "xticks": bs}
    chart(os.path.join(out, "tokens_per_s.png"), [
        dict(batch_axis, ylabel="tokens/s (median step)",
             series=side("longhaul train", "lh", "C0") + side("eager PyTorch", "py", "C1")),
        dict(batch_axis, ylabel="longhaul / PyTorch (back-to-back pairs)", hlines=[[1.10, "target 1.10x"]],
             series=[{"label": "median", "x": bs, "y": [statistics.median(results[b]["ratios"]) for b in bs],
                      "style": "o-", "color": "C2"},
                     {"x": [b for b, _ in ratios], "y": [r for _, r in ratios], "style": ".", "color": "C2"}])],
        title=f"GPT {a.n_layer} layers, {a.n_embd} wide, block {a.block_size}, {a.threads} threads, "
              f"{os.cpu_count()} cores", panel_size=(5.5, 3.8))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longhaul", default="build/longhaul")
    ap.add_argument("--source-dir", default=".")
    ap.add_argument("--corpus", default="/usr/share/games/fortunes")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-sizes", default="", help='several batch sizes, e.g. "4 8 16 32" (overrides --batch-size)')
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each side; best is kept")
    ap.add_argument("--out", default="", help="where table.md and the PNG go (default runs/bench-inner-<utc>)")
    a = ap.parse_args()
    out = os.path.abspath(a.out or os.path.join(
        a.source_dir, "runs", "bench-inner-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")))
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-inner-")
    results = {}
    for b in [int(x) for x in a.batch_sizes.split()] or [a.batch_size]:
        a.batch_size = b
        results[b] = measure(a, work)
    md = table(a, results)
    print("\n" + md)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md)
    plot(a, out, results)
    print(f"results: {os.path.join(out, 'table.md')}")


if __name__ == "__main__":
    main()
