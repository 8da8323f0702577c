#!/usr/bin/env python3
"""Golden values for the outer optimizer: torch.optim.SGD itself over 20 rounds.

Writes a little-endian float32 binary file:
  int32 header: numel, rounds, n_cases
  for each case of CASES (lr, momentum, nesterov, warmup rounds W, clip norm c; avg = SGD lr=1
  mu=0): theta0[numel], then per round: delta[numel], theta_after[numel].
  W > 1: LambdaLR(lambda t: min(1, (t+1)/W)) stepped after each step (linear outer warmup);
  c > 0: torch.nn.utils.clip_grad_norm_(p, c) after setting p.grad = delta.
Pseudo-gradients are drawn from a seeded torch generator, so the file is reproducible.
Usage: gen_outer_golden.py OUT_FILE
"""
import struct
import sys

import torch

NUMEL, ROUNDS = 257, 20
CASES = [(0.7, 0.9, True, 0, 0.0), (0.5, 0.8, False, 0, 0.0), (1.0, 0.0, False, 0, 0.0),
         (0.7, 0.9, True, 5, 0.0), (0.7, 0.9, True, 0, 1.0), (0.5, 0.8, False, 3, 1.2)]


def main(out):
    g = torch.Generator().manual_seed(1234)
    with open(out, "wb") as f:
        f.write(struct.pack("<3i", NUMEL, ROUNDS, len(CASES)))
        for lr, mu, nesterov, warmup, clip in CASES:
            theta = torch.randn(NUMEL, generator=g, dtype=torch.float32)
            f.write(theta.numpy().tobytes())
            p = torch.nn.Parameter(theta.clone())
            opt = torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=nesterov)
            sched = None
            if warmup > 1:
                sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup))
            for r in range(ROUNDS):
                # Every third pseudo-gradient is small (norm ~0.8): a clip at 1.0 does not bind.
                scale = 0.05 if r % 3 == 0 else 0.1
                delta = torch.randn(NUMEL, generator=g, dtype=torch.float32) * scale
                p.grad = delta.clone()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_([p], clip)
                opt.step()
                if sched is not None:
                    sched.step()
                f.write(delta.numpy().tobytes())
                f.write(p.detach().numpy().tobytes())
    print(f"wrote {out}: {len(CASES)} cases x {ROUNDS} rounds x {NUMEL} elements")


if __name__ == "__main__":
    main(sys.argv[1])
