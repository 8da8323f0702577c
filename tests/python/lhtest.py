"""What the ctest Python scripts share (tests/python/test_*.py, tests/ops/test_*.py).

ctest runs each as `SCRIPT --longhaul BIN --source-dir SRC --work-dir DIR` (tests/CMakeLists.txt).
Scripts in tests/python import this module as it is (their folder is on sys.path); those in
tests/ops put tests/python on the path first:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import lhtest

Standard library only: it runs under the torch venv's python and under Debian's python3.
"""
import argparse
import os
import shutil
import sys


def parse_args(fresh=True):
    """The arguments ctest passes, as absolute paths, with build_dir = the binary's folder.

    The work dir is created; fresh=True empties it first (a test that reuses what its previous
    run left, such as an install prefix, passes False)."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longhaul", required=True, help="the longhaul binary under test")
    ap.add_argument("--source-dir", required=True, help="the repository")
    ap.add_argument("--work-dir", required=True, help="scratch space of this test")
    a = ap.parse_args()
    a.longhaul = os.path.abspath(a.longhaul)
    a.source_dir = os.path.abspath(a.source_dir)
    a.work_dir = os.path.abspath(a.work_dir)
    a.build_dir = os.path.dirname(a.longhaul)
    if fresh:
        shutil.rmtree(a.work_dir, ignore_errors=True)
    os.makedirs(a.work_dir, exist_ok=True)
    return a


def fail(msg):
    """Ends the test at the first failure, with the message on stderr."""
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Checks:
    """Named checks that all run: `check(name, ok, detail)` prints [ok] or [FAIL] and returns ok;
    `check.report()` prints each failure's detail and returns the exit status (0 when all passed)."""

    def __init__(self):
        self.failures = []

    def __call__(self, name, ok, detail=""):
        print(f"[{'ok' if ok else 'FAIL'}] {name}", flush=True)
        if not ok:
            self.failures.append((name, detail))
        return ok

    def report(self):
        for name, detail in self.failures:
            print(f"\nFAILED {name}\n{detail}")
        print(f"{len(self.failures)} failure(s)")
        return 1 if self.failures else 0
