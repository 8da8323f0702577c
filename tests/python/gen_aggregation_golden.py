#!/usr/bin/env python3
"""Golden values for the coordinator's aggregation modes, computed with NumPy.

Writes a little-endian binary file:
  int32 header: numel, n_cases
  per case: int32 k (uploads), int32 mode (0 mean, 1 trimmed_mean, 2 median), int32 trim,
            float64 weights[k], float32 uploads[k][numel], float32 expected[numel]
mean is the token-weighted mean (fp64 accumulation, then one division, cast to fp32);
trimmed_mean drops `trim` values at each end per coordinate (median when k <= 2*trim);
median is np.median per coordinate (mean of the two middle values for even k).
Uploads are drawn from a seeded generator with ties and outliers, so the file is reproducible.
Usage: gen_aggregation_golden.py OUT_FILE
"""
import struct
import sys

import numpy as np

NUMEL = 1000
CASES = [  # (k, mode, trim)
    (3, 0, 0), (5, 0, 0), (5, 1, 1), (6, 1, 2), (4, 1, 2), (7, 2, 0), (4, 2, 0), (1, 2, 0), (2, 1, 1),
]


def expected(x, w, mode, trim):
    k = x.shape[0]
    if mode == 0:
        acc = np.zeros(x.shape[1], dtype=np.float64)
        for j in range(k):  # the same order and precision as the C++ accumulator
            acc += w[j] * x[j].astype(np.float64)
        return (acc / w.sum()).astype(np.float32)
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
        for k, mode, trim in CASES:
            x = (rng.standard_normal((k, NUMEL)) * 0.01).astype(np.float32)
            x[:, ::7] = x[0, ::7]  # ties
            if k > 2:
                x[k - 1, ::3] *= 1000.0  # one site's outliers (still within the norm caps below)
            w = rng.integers(100, 10000, size=k).astype(np.float64)
            f.write(struct.pack("<3i", k, mode, trim))
            f.write(w.astype("<f8").tobytes())
            f.write(x.astype("<f4").tobytes())
            f.write(expected(x, w, mode, trim).astype("<f4").tobytes())


if __name__ == "__main__":
    main(sys.argv[1])
