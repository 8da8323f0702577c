#!/usr/bin/env python3
"""`scripts/gpu-check` on a machine without a GPU (issue 13 §6): with NVIDIA_SMI pointed at a
missing file it prints "no GPU", builds and runs nothing, and exits 0; an unknown argument is
exit status 2.

Run by ctest as: python test_gpu_check_no_gpu.py --longhaul BIN --source-dir SRC --work-dir DIR
"""
import os
import subprocess
import sys

import lhtest


def main():
    a = lhtest.parse_args()
    script = os.path.join(a.source_dir, "scripts/gpu-check")
    build = os.path.join(a.work_dir, "build-gpu")
    env = dict(os.environ, NVIDIA_SMI="/nonexistent/nvidia-smi", BUILD_DIR=build)
    failures = []
    g = subprocess.run([script], env=env, capture_output=True, text=True, timeout=30)
    if g.returncode != 0 or "gpu-check: no GPU" not in g.stdout or "SUMMARY: no GPU" not in g.stdout:
        failures.append(f"without a GPU: exit {g.returncode}, output:\n{g.stdout}{g.stderr}")
    if os.path.exists(build):
        failures.append(f"without a GPU it still created the build dir {build}")
    bad = subprocess.run([script, "--bogus"], env=env, capture_output=True, text=True, timeout=30)
    if bad.returncode != 2 or "unknown argument --bogus" not in bad.stderr:
        failures.append(f"--bogus: exit {bad.returncode}, stderr {bad.stderr!r}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
