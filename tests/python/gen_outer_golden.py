#!/usr/bin/env python3
"""Golden values for the outer optimizer: torch.optim.SGD itself over 20 rounds.

Writes a little-endian float32 binary file:
  int32 header: numel, rounds, n_cases
  for each case (nesterov lr=0.7 mu=0.9; sgdm lr=0.5 mu=0.8; avg = SGD lr=1 mu=0):
    theta0[numel], then per round: delta[numel], theta_after[numel]
Pseudo-gradients are drawn from a seeded torch generator, so the file is reproducible.
Usage: gen_outer_golden.py OUT_FILE
"""
import struct
import sys

import torch

NUMEL, ROUNDS = 257, 20
CASES = [(0.7, 0.9, True), (0.5, 0.8, False), (1.0, 0.0, False)]


def main(out):
    g = torch.Generator().manual_seed(1234)
    with open(out, "wb") as f:
        f.write(struct.pack("<3i", NUMEL, ROUNDS, len(CASES)))
        for lr, mu, nesterov in CASES:
            theta = torch.randn(NUMEL, generator=g, dtype=torch.float32)
            f.write(theta.numpy().tobytes())
            p = torch.nn.Parameter(theta.clone())
            opt = torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=nesterov)
            for _ in range(ROUNDS):
                delta = torch.randn(NUMEL, generator=g, dtype=torch.float32) * 0.1
                p.grad = delta.clone()
                opt.step()
                f.write(delta.numpy().tobytes())
                f.write(p.detach().numpy().tobytes())
    print(f"wrote {out}: {len(CASES)} cases x {ROUNDS} rounds x {NUMEL} elements")


if __name__ == "__main__":
    main(sys.argv[1])
