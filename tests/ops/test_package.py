#!/usr/bin/python3
"""The .deb that CPack builds installs what a machine needs (#12 "Operating a run").

Runs `cpack -G DEB` on the suite's build dir (the binary's folder) into a temporary folder under
WORK_DIR, then reads the package with `dpkg-deb --info`, `--control` and `--contents`:
  * control: package name, the project's version, this machine's architecture, a postinst that
    is executable and valid sh, and a Depends line that names the Debian package of every system
    library bin/longhaul loads (or a package that one depends on, e.g. libgcc-s1 via libstdc++6);
  * contents: usr/bin/longhaul (executable, root-owned), longhaul-plot-run, the bundled LibTorch
    libraries the binary needs in usr/lib/longhaul, every configs/*.toml as an example, the
    systemd units (whose ExecStart binary the package holds) and the sysusers entry; nothing
    outside usr/.
The package and CPack's staging copy (several GB with the CUDA libraries) are removed at the end.
Most of the ~1.5 minutes is CPack copying the install tree and hashing it, not compressing it
(CPACK_DEBIAN_COMPRESSION_TYPE "none" took as long as "zstd" here).

  test_package.py --longhaul BIN --source-dir DIR --work-dir DIR
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lhtest import Checks, fail, parse_args  # noqa: E402

SYSTEM_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


def run(cmd, timeout=120):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cpack_var(build, name):
    """A variable as CMake wrote it into build/CPackConfig.cmake."""
    m = re.search(r'^set\(%s "([^"]*)"\)' % re.escape(name), open(os.path.join(build, "CPackConfig.cmake")).read(),
                  re.M)
    return m.group(1) if m else None


def owning_package(lib):
    """The Debian package that ships the system library `lib` (a soname), or None."""
    for d in SYSTEM_LIB_DIRS:
        path = os.path.join(d, lib)
        if not os.path.exists(path):
            continue
        # merged /usr: dpkg knows each file under the name its package used, /lib or /usr/lib
        alt = path[4:] if path.startswith("/usr/") else "/usr" + path
        for p in (path, alt, os.path.realpath(path)):
            r = run(["dpkg-query", "-S", p])
            if r.returncode == 0:
                return r.stdout.split(":")[0].strip()
    return None


def package_depends(pkg):
    """The packages that installed package `pkg` depends on (names only)."""
    r = run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", pkg])
    return names(r.stdout) if r.returncode == 0 else set()


def names(depends):
    """Package names of a Depends field ("a (>= 1), b | c" -> {a, b, c})."""
    return {re.split(r"[\s(:]", alt.strip())[0] for dep in depends.split(",") for alt in dep.split("|") if alt.strip()}


def main():
    a = parse_args()
    for tool in ("cpack", "dpkg-deb", "dpkg-query"):
        if not shutil.which(tool):
            fail(f"{tool} is missing: run scripts/bootstrap (Debian: cmake, dpkg)")
    build, src = a.build_dir, a.source_dir
    check = Checks()
    out = tempfile.mkdtemp(prefix="cpack-", dir=a.work_dir)
    try:
        r = run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", out], timeout=780)
        if r.returncode != 0:
            fail(f"cpack -G DEB exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        debs = glob.glob(os.path.join(out, "*.deb"))
        if len(debs) != 1:
            fail(f"cpack wrote {debs or 'no .deb'} into {out}; expected one .deb\n{r.stdout[-2000:]}")
        deb = debs[0]
        version, arch = cpack_var(build, "CPACK_PACKAGE_VERSION"), run(["dpkg", "--print-architecture"]).stdout.strip()
        check(f"file name longhaul_{version}_{arch}.deb", os.path.basename(deb) == f"longhaul_{version}_{arch}.deb",
              os.path.basename(deb))

        # ---- control
        info = run(["dpkg-deb", "--info", deb])
        if info.returncode != 0:
            fail(f"dpkg-deb --info {deb}: exit {info.returncode}\n{info.stderr}")
        field = dict(re.findall(r"^ ([A-Za-z-]+): (.*)$", info.stdout, re.M))
        for k, want in (("Package", "longhaul"), ("Version", version), ("Architecture", arch)):
            check(f"control: {k}: {want}", field.get(k) == want, f"{k}: {field.get(k)!r}\n{info.stdout}")
        control = os.path.join(out, "control")
        run(["dpkg-deb", "--control", deb, control])
        postinst = os.path.join(control, "postinst")
        check("control: postinst present and executable", os.access(postinst, os.X_OK), info.stdout)
        if os.path.exists(postinst):
            sh = run(["sh", "-n", postinst])
            check("control: postinst is valid sh", sh.returncode == 0, sh.stderr)

        declared = names(field.get("Depends", ""))
        covered = declared.union(*(package_depends(p) for p in declared))
        dyn = run(["readelf", "-d", a.longhaul]).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dyn)
        check("bin/longhaul has NEEDED entries (readelf)", bool(needed), dyn[-2000:])
        bundled = []
        for lib in needed:
            pkg = owning_package(lib)
            if pkg is None:
                bundled.append(lib)  # not a Debian package's: must ship in usr/lib/longhaul
                continue
            check(f"Depends covers {lib} (package {pkg})", pkg in covered,
                  f"Depends: {field.get('Depends')!r}; {pkg} is neither listed nor a dependency of a listed package "
                  "(add it to CPACK_DEBIAN_PACKAGE_DEPENDS in CMakeLists.txt)")

        # ---- contents
        c = run(["dpkg-deb", "--contents", deb])
        if c.returncode != 0:
            fail(f"dpkg-deb --contents {deb}: exit {c.returncode}\n{c.stderr}")
        entries = {}  # path without "./" -> (mode, owner)
        for line in c.stdout.splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6:
                entries[parts[5].split(" -> ")[0].lstrip("./").rstrip("/")] = (parts[0], parts[1])
        listing = "\n".join(sorted(entries))
        mode, owner = entries.get("usr/bin/longhaul", ("", ""))
        check("usr/bin/longhaul: a file, executable, owned by root", mode.startswith("-rwx") and owner == "root/root",
              f"{mode} {owner}\n{listing[:3000]}")
        expect = ["usr/bin/longhaul-plot-run", "usr/lib/systemd/system/longhaul-coordinator.service",
                  "usr/lib/systemd/system/longhaul-site@.service", "usr/lib/sysusers.d/longhaul.conf"]
        configs = sorted(glob.glob(os.path.join(src, "configs", "*.toml")))
        expect += ["usr/share/longhaul/examples/" + os.path.basename(t) for t in configs]
        expect += ["usr/lib/longhaul/" + lib for lib in bundled]
        for rel in expect:
            check(f"contents: {rel}", rel in entries, listing[:3000])
        for unit in glob.glob(os.path.join(src, "deploy", "systemd", "*.service")):
            for exe in re.findall(r"^ExecStart=(\S+)", open(unit).read(), re.M):
                check(f"{os.path.basename(unit)}: ExecStart {exe} is in the package", exe.lstrip("/") in entries)
        outside = [p for p in entries if p and p != "usr" and not p.startswith("usr/")]
        check("contents: nothing outside usr/", not outside, "\n".join(outside[:50]))
        print(f"{os.path.basename(deb)}: {os.path.getsize(deb) / 1e9:.2f} GB, {len(entries)} entries, "
              f"Depends: {field.get('Depends')}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return check.report()


if __name__ == "__main__":
    sys.exit(main())
