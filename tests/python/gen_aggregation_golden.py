#!/usr/bin/env python3
"""Golden values for the coordinator's aggregation modes, computed with NumPy.

Writes a little-endian binary file:
  int32 header: numel, n_cases
  per case: int32 k (uploads), int32 mode (0 mean, 1 trimmed_mean, 2 median), int32 trim,
            int32 weighting (0 tokens, 1 uniform, 2 normalized), float64 weights[k],
            int32 steps[k], float32 uploads[k][numel], float32 expected[numel]
mean is the token-weighted mean as the coordinator streams it: acc (fp32) += fp32(fp32(coef) * x)
  in upload order (the product rounded, then the add), then float32(float64(acc) / divisor);
  uniform: every weight 1; normalized (FedNova): sum of (w/H) x / W, times sum(w H) / W,
  computed as acc / (W*W / sum(w H)) like the C++ (robust modes ignore the weighting);
trimmed_mean drops `trim` values at each end per coordinate (median when k <= 2*trim);
median is np.median per coordinate (mean of the two middle values for even k).
Uploads are drawn from a seeded generator with ties and outliers, so the file is reproducible.
Usage: gen_aggregation_golden.py OUT_FILE
"""
import struct
import sys

import numpy as np

NUMEL = 1000
CASES = [  # (k, mode, trim, weighting)
    (3, 0, 0, 0), (5, 0, 0, 0), (5, 1, 1, 0), (6, 1, 2, 0), (4, 1, 2, 0), (7, 2, 0, 0), (4, 2, 0, 0),
    (1, 2, 0, 0), (2, 1, 1, 0), (4, 0, 0, 1), (4, 0, 0, 2), (3, 0, 0, 2), (1, 0, 0, 2), (5, 1, 1, 2),
]


def expected(x, w, mode, trim, weighting=0, steps=None):
    k = x.shape[0]
    if mode == 0:
        if weighting == 1:
            w = np.ones(k)
        acc = np.zeros(x.shape[1], dtype=np.float32)
        for j in range(k):  # the same order and precision as the C++ accumulator
            coef = w[j] / steps[j] if weighting == 2 else w[j]
            acc = acc + (np.float32(coef) * x[j]).astype(np.float32)
        if weighting == 2:
            sw = sum(w[j] * steps[j] for j in range(k))
            return (acc.astype(np.float64) / (w.sum() * w.sum() / sw)).astype(np.float32)
        return (acc.astype(np.float64) / w.sum()).astype(np.float32)
    s = np.sort(x, axis=0)
    if mode == 2 or k <= 2 * trim:
        if k % 2:
            return s[k // 2]
        return (0.5 * (s[k // 2 - 1].astype(np.float64) + s[k // 2].astype(np.float64))).astype(np.float32)
    kept = s[trim:k - trim].astype(np.float64)
    return (kept.sum(axis=0) / (k - 2 * trim)).astype(np.float32)


def main(out):
    rng = np.random.default_rng(2024)
    with open(out, "wb") as f:
        f.write(struct.pack("<2i", NUMEL, len(CASES)))
        for k, mode, trim, weighting in CASES:
            x = (rng.standard_normal((k, NUMEL)) * 0.01).astype(np.float32)
            x[:, ::7] = x[0, ::7]  # ties
            if k > 2:
                x[k - 1, ::3] *= 1000.0  # one site's outliers (still within the norm caps below)
            w = rng.integers(100, 10000, size=k).astype(np.float64)
            steps = [1] * k if weighting != 2 else [int(v) for v in rng.integers(1, 50, size=k)]
            f.write(struct.pack("<4i", k, mode, trim, weighting))
            f.write(w.astype("<f8").tobytes())
            f.write(struct.pack(f"<{k}i", *steps))
            f.write(x.astype("<f4").tobytes())
            f.write(expected(x, w, mode, trim, weighting, steps).astype("<f4").tobytes())


if __name__ == "__main__":
    main(sys.argv[1])
