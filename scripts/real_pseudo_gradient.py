#!/usr/bin/env python3
"""A real pseudo-gradient of the demo-sized GPT, for codec measurements (scripts/bench-zstd).

Trains nanoGPT (tests/python/nanogpt_model.py; the architecture Longhaul builds: n_layer 2,
n_head 2, n_embd 64, block 64, byte-level vocab 256) with AdamW on a byte corpus (default
Debian `fortunes`), batch 8, lr 1e-3 -> 1e-4 cosine (warmup 30, decay 600), one CPU thread,
for S steps, then H more steps with the same optimizer state, and writes
Delta = theta_S - theta_{S+H} (raw little-endian fp32, parameters in state_dict order, the tied
lm_head once) -- what a DiLoCo site uploads after one round of H inner steps at that point.
Usage: real_pseudo_gradient.py OUT.f32 [--corpus DIR] [--start S] [--h H] [--seed N]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from nanogpt_model import GPT, GPTConfig, get_lr  # noqa: E402


def corpus_bytes(path):
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    data = b"".join(open(f, "rb").read() for f in files)
    return np.frombuffer(data, dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--corpus", default="/usr/share/games/fortunes")
    ap.add_argument("--start", type=int, default=200)
    ap.add_argument("--h", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    data = torch.from_numpy(corpus_bytes(a.corpus).astype(np.int64))
    cfg = GPTConfig(block_size=64, vocab_size=256, n_layer=2, n_head=2, n_embd=64, dropout=0.0, bias=True)
    model = GPT(cfg)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    g = torch.Generator().manual_seed(a.seed)

    def step(it):
        for group in opt.param_groups:
            group["lr"] = get_lr(it, 1e-3, 1e-4, 30, 600)
        ix = torch.randint(len(data) - 65, (8,), generator=g)
        x = torch.stack([data[i:i + 64] for i in ix])
        y = torch.stack([data[i + 1:i + 65] for i in ix])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    def flat():
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()

    for it in range(a.start):
        loss = step(it)
    theta_r = flat()
    for it in range(a.start, a.start + a.h):
        loss = step(it)
    delta = (theta_r - flat()).numpy().astype("<f4")
    delta.tofile(a.out)
    print(f"{a.out}: {delta.size} parameters, train loss {loss:.3f} at step {a.start + a.h}; "
          f"delta L2 {np.linalg.norm(delta):.4g}, rms {np.sqrt(np.mean(delta.astype(np.float64) ** 2)):.3g}, "
          f"max |x| {np.abs(delta).max():.3g}")


if __name__ == "__main__":
    main()
