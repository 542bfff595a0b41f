"""pidproc's suite under real Linux kernels, each booted in a qemu VM.

    python3 tools/kernels.py                    every kernel: suite, forced paths, report
    python3 tools/kernels.py --kernel 7.2       one kernel (repeatable)
    python3 tools/kernels.py --kernel 6.1 --run "python3 -m pytest tests/test_peer.py"
    python3 tools/kernels.py -- -k wait         extra arguments reach pytest

Everything else in the project runs on this machine's kernel, or on older
ones only as simulated by seccomp filters that fake a missing syscall.  Here
Debian's own cloud kernels boot, each with the Debian userland of its
release (the roots of tools/distros.py, built and cached the same way):

    6.1   bookworm  linux-image-6.1.0-N-cloud-amd64     glibc 2.36  CPython 3.11
    6.12  trixie    linux-image-6.12.N+deb13-cloud-amd64  glibc 2.41  CPython 3.13
    7.2   sid       linux-binary-7.2.N+deb14-cloud-amd64  glibc 2.43  CPython 3.14

6.1 gets bookworm, the release it shipped in: its glibc has no pidfd_spawn,
so the clone3 path is the default there, as on real bookworm machines.

How a VM gets its userland, and why.  The cloud kernels build in virtio-pci,
ext4, fuse/virtio-fs and initramfs support but have virtio-blk, overlayfs
and squashfs as modules, and no 9p.  The whole root goes into the initramfs
instead: the kernel unpacks a newc cpio into its tmpfs rootfs, no module
and no disk needed.  The image is two concatenated archives (the kernel
reads them in turn): the root itself, uncompressed, cached per root and
recipe (the root's documentation, locales and apt lists left out; 450 MB
for trixie), and a small one made per run with the working tree at /src, a
venv at /venv with pidproc built into it, /init and the job.  Measured here
under TCG with trixie's root: plain, 447 MB, userland reached 9.7 s after
power-on; gzip -1, 173 MB (26 s to pack, once), 15.9 s: every boot would
pay the emulated decompression, so the cache keeps the plain archive (a
few hundred MB of disk per root).  pidproc is built in the root
with chroot on the host (native speed, Debian's cffi, offline as in
tools/distros.py), not inside the emulated VM.  The VM gets 3 GiB of RAM.

KVM is used when it works: a tiny static /init is booted with -accel kvm
first, and only if it prints its marker within seconds does the real boot
use KVM.  On this machine it does not: qemu cannot start a KVM guest with
-cpu host (it fails to set MSR 0x10a), and with other CPU models Debian's
kernels stop in their decompressor ("KVM internal error"); TCG (-cpu max)
it is.  -cpu max also ran the interpreter faster under TCG than qemu64 or
Nehalem (10 startups: 4.9 s against 6.1 and 6.0).

Inside each VM (tools/kernels_vm.py, run by /init): the feature gates,
probed directly (pidfs, PIDFD_GET_INFO, PIDFD_INFO_EXIT, SO_PEERPIDFD,
close_range, what clone3 accepts, pidfd_spawn, pidfd_getpid); what pidproc
does with a foreign reaper and with a process that is not its child; the
test files, one pytest run each (KERNEL_FILES by default: the files whose
outcome depends on the kernel; --files "tests bench" for the whole suite,
25-40 min per kernel under TCG on two shared cores, too long for CI) on the
default path; then KERNEL_FORCED_FILES with each other path forced by
PIDPROC_BACKEND, as tools/distros.py does.  Results come back over the
second serial port as a base64 tar; the console is the log.  The VMs run
side by side, one thread each.

The report lists, per kernel: the kernel, glibc, CPython, the usable paths,
the counts, and the gates open.  Then the gated tests: every test that
skipped anywhere with a reason naming a feature gate (see GATE_REASONS)
must skip on each kernel without that feature and run on each kernel with
it.  A test that skips for a feature the kernel has, or runs and fails
where it lacks it, fails the run.

Root is required (chroot and mount for the build, like tools/distros.py);
without it this stops with a message saying so.  Mounts are made in a
private mount namespace and undone in finally blocks; the qemu processes
run in their own process groups and are killed with them on every way out
(a VM that outlives its timeout is killed and reported as a failure); the
per-run image is deleted.  Cached: the roots, the kernels (by package name
and version) and the root images (by recipe and root stamp), under
/var/cache/pidproc-roots/kernels.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distros  # noqa: E402
from distros import CACHE, REPO, StepFailed, in_root, mounted, run, say, tail  # noqa: E402

# Bump when the image recipe changes: every cached image is made again.
RECIPE = 1
KCACHE = CACHE / "kernels"
NS_MARK = "PIDPROC_KERNELS_PRIVATE_NS"
MEMORY_MB = 3072
SMP = 2
# A whole VM (boot, gates, the suite, the forced reruns); beyond this it hangs.
VM_TIMEOUT = 2400
# Kept free at the end of a VM's time for its results to leave over the
# serial port: the steps inside stop this long before the VM's timeout.
RESULTS_MARGIN = 120
FILE_TIMEOUT = 600

BOOKWORM = distros.Suite("bookworm", ("3.11",), ("libpython3.11-testsuite",))


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    suite: distros.Suite
    python: str
    package: str  # a regular expression over the root's package names
    vmlinuz: str  # where the package has it (a glob)
    has_pidfd_spawn: bool  # the root's glibc (2.39+)


KERNELS = {
    k.name: k
    for k in (
        Kernel(
            "6.1", BOOKWORM, "3.11", r"linux-image-6\.1\.0-\d+-cloud-amd64", "boot/vmlinuz-*", False
        ),
        Kernel(
            "6.12",
            distros.SUITES["trixie"],
            "3.13",
            r"linux-image-6\.12\.\d+\+deb13-cloud-amd64",
            "boot/vmlinuz-*",
            True,
        ),
        Kernel(
            "7.2",
            distros.SUITES["sid"],
            "3.14",
            r"linux-binary-7\.2\.\d+\+deb\d+-cloud-amd64",
            "usr/lib/modules/*/vmlinuz",
            True,
        ),
    )
}

# What runs in every VM by default: the files whose outcome depends on the
# kernel (pidfds, waiting, exit status, signals and fds in the child, the
# paths and their probes, races, faults, exhaustion).  The whole suite
# (--files "tests bench") takes ~25-40 min per kernel under TCG on two
# shared cores, too long for CI; it runs on demand.  test_child_state runs
# every path itself (the ``backend`` fixture).
KERNEL_FILES = (
    "tests/test_pidfd_handle.py",
    "tests/test_lifecycle.py",
    "tests/test_waitmany.py",
    "tests/test_peer.py",
    "tests/test_asyncio.py",
    "tests/test_backends.py",
    "tests/test_pidfd_spawn_path.py",
    "tests/test_races.py",
    "tests/test_exhaustion.py",
    "tests/test_sandbox_faults.py",
    "tests/test_child_state.py",
    "tests/test_lifecycle_options.py",
)
# Forced by PIDPROC_BACKEND onto each other path: the parity file whose
# children depend on the kernel (close_range, the fds a child sees).
KERNEL_FORCED_FILES = ("tests/test_security_fds.py",)
# Left out in the VMs whatever the files: loops and tables that say nothing
# more about the kernel than the rest of their file and take most of its
# time under TCG (10,000 spawns: ~8-11 min; 2,000 children: ~2 min; the
# stdlib comparison of every child-state case on every path: ~3 min).
DESELECT = (
    "tests/test_lifecycle.py::test_ten_thousand_spawns_leave_fd_count_flat",
    "tests/test_waitmany.py::test_two_thousand_children",
    "tests/test_child_state.py::test_child_state_matches_stdlib",
)

# Skip reasons that name a feature gate of tools/kernels_vm.py: (pattern,
# gate, whether the test skips when the gate is OPEN).  From the reasons the
# tests give (grep skipif, pytest.skip in tests/).
GATE_REASONS = (
    (r"no pidfs", "pidfs", False),
    (r"no PIDFD_GET_INFO|without PIDFD_GET_INFO", "PIDFD_GET_INFO", False),
    (r"PIDFD_INFO_EXIT", "PIDFD_INFO_EXIT", False),
    (r"SO_PEERPIDFD", "SO_PEERPIDFD", False),
    (r"no pidfd_spawn path here", "pidfd_spawn", False),
    (r"glibc here has pidfd_spawn", "pidfd_spawn", True),
    (r"glibc has no pidfd_getpid", "pidfd_getpid", False),
    (r"no CLONE_PIDFD_AUTOKILL", "CLONE_PIDFD_AUTOKILL", False),
)


# ---- the kernels ----


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def newest_package(apt_cache: Callable[..., list[str]], pattern: str) -> tuple[str, str] | None:
    """The newest (name, version) of the linux packages matching pattern in
    the lists that ``apt_cache(*args)`` (the apt-cache command line for
    args) reads; None if none is there."""
    out = subprocess.run(
        apt_cache("pkgnames", "linux-"), capture_output=True, text=True
    ).stdout.split()
    names = sorted((n for n in out if re.fullmatch(pattern, n)), key=_version_key)
    if names:
        show = subprocess.run(
            apt_cache("show", "--no-all-versions", names[-1]), capture_output=True, text=True
        ).stdout
        m = re.search(r"^Version: (\S+)", show, re.M)
        if m:
            return names[-1], m[1]
    return None


def _apt_update(k: Kernel, log: Path) -> None:
    # sid's Release files expire within days; a cached root's lists may be older.
    update = ["apt-get", "update", "-q", "-o", "Acquire::Check-Valid-Until=false"]
    run(in_root(k.suite.root, *update), log)


def kernel_package(k: Kernel, log: Path) -> tuple[str, str]:
    """The newest package (name, version) in the root's lists that has k."""
    for attempt in (1, 2):
        found = newest_package(lambda *a: in_root(k.suite.root, "apt-cache", *a), k.package)
        if found:
            return found
        if attempt == 1:
            _apt_update(k, log)
    raise StepFailed(f"{k.name}: no package matching {k.package} in the {k.suite.name} root")


def ensure_kernel(k: Kernel, log: Path) -> Path:
    """The kernel image, downloaded with apt-get in its root once, cached."""
    name, version = kernel_package(k, log)
    dest = KCACHE / "vmlinuz" / f"{name}_{version}"
    if dest.exists():
        return dest
    dl = k.suite.root / "tmp" / "pidproc-kernel-download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir(parents=True)
    try:
        say(f"{k.name}: apt-get download {name} ({version})")
        get = ["apt-get", "download", "-q", f"{name}={version}"]
        cwd = "/tmp/pidproc-kernel-download"
        if run(in_root(k.suite.root, *get, cwd=cwd), log, check=False, timeout=600) != 0:
            _apt_update(k, log)
            run(in_root(k.suite.root, *get, cwd=cwd), log, timeout=600)
        vmlinuz_from_deb(dl, k.vmlinuz, dest, log, k.name)
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    return dest


def vmlinuz_from_deb(dl: Path, pattern: str, dest: Path, log: Path, who: str) -> None:
    """The one file matching pattern in the .deb that apt-get downloaded into
    dl, unpacked there and copied to dest (whole or not at all)."""
    (deb,) = dl.glob("*.deb")
    unpacked = dl / "x"
    run(["dpkg-deb", "-x", deb, unpacked], log)
    found = sorted(unpacked.glob(pattern))
    if len(found) != 1:
        raise StepFailed(f"{who}: {deb.name} has {len(found)} files {pattern}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(".partial")
    shutil.copyfile(found[0], part)
    part.rename(dest)


# ---- the images ----

# Left out of the root image: not needed to run anything, or made per run.
IMAGE_EXCLUDES = (
    "./usr/share/doc",
    "./usr/share/man",
    "./usr/share/info",
    "./usr/share/locale",
    "./var/lib/apt/lists",
    "./var/cache",
    "./work",
    "./src",
    "./venv",
    "./pidproc-vm",
    "./results",
)
EMPTIED = ("./proc", "./sys", "./dev", "./tmp", "./run")


def cpio_of(root: Path, find_args: list[str], out: Path, log: Path) -> None:
    """find ... | cpio -o -H newc > out, run in root (paths start with ./)."""
    find = shlex.join(["find", *find_args])
    where, to = shlex.quote(str(root)), shlex.quote(str(out))
    cmd = f"cd {where} && {find} | cpio -o -H newc --quiet > {to}"
    run(["sh", "-c", cmd], log)


def join_cpios(parts: list[Path], initrd: Path) -> Path:
    """One initrd of several cpio archives, one after the other (the
    kernel unpacks each in turn, later files over earlier ones)."""
    with open(initrd, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    return initrd


def ensure_image(suite: distros.Suite, log: Path) -> Path:
    """The root as a newc cpio, remade when the recipe or the root changes."""
    stamp = (suite.root / ".pidproc-root.json").read_bytes()
    key = hashlib.sha256(stamp + f"recipe {RECIPE} {IMAGE_EXCLUDES} {EMPTIED}".encode())
    image = KCACHE / "images" / f"{suite.name}-{key.hexdigest()[:12]}.cpio"
    if image.exists():
        return image
    image.parent.mkdir(parents=True, exist_ok=True)
    for old in image.parent.glob(f"{suite.name}-*"):
        old.unlink()
    say(f"{suite.name}: packing the root into {image.name}")
    prune: list[str] = []
    for p in IMAGE_EXCLUDES:
        prune += [*(["-o"] if prune else []), "-path", p]
    inside = []
    for p in EMPTIED:
        inside += [*(["-o"] if inside else []), "-path", f"{p}/*"]
    part = image.with_suffix(".partial")
    args = [".", "-xdev", "(", *prune, "-o", *inside, ")", "-prune", "-o", "-print"]
    try:
        cpio_of(suite.root, args, part, log)
        part.rename(image)
    finally:
        part.unlink(missing_ok=True)
    return image


# What every VM's /init does first (here and in tools/arm64.py): the
# kernel's file systems, cgroup2, and the loopback interface up.
VM_SETUP = r"""mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
chmod 1777 /tmp
hostname pidproc-vm
python3 -c '
import fcntl, socket, struct
with socket.socket() as s:
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x40))
'
"""

INIT = (
    r"""#!/bin/sh
# /init of a tools/kernels.py VM: mounts, the job, the results out, power off.
export PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
"""
    + VM_SETUP
    + r"""echo "pidproc-vm: userland up $(cut -d" " -f1 /proc/uptime) s, $(uname -r)"
%(env)s python3 /pidproc-vm/job.py
echo "pidproc-vm: job exit $?"
(cd /results && tar czf - .) | base64 > /dev/ttyS1
echo "pidproc-vm: results sent"
echo o > /proc/sysrq-trigger
sleep 60
"""
)


def build_initrd(
    k: Kernel, image: Path, job: dict[str, Any], files: list[str], work: Path, log: Path
) -> Path:
    """The root image plus this run's archive: the tree, the venv, /init, the job."""
    root = k.suite.root
    for d in ("src", "venv"):
        distros.remove_tree(root / d)
    try:
        distros.copy_tree(files, root / "src")
        with mounted(root):
            py = f"python{k.python}"
            venv = ["-m", "venv", "--system-site-packages", "--without-pip", "/venv"]
            run(in_root(root, py, *venv), log)
            pip = ["/venv/bin/python", "-m", "pip", "install", "--no-index", "--no-build-isolation"]
            pip += ["--no-deps", "--disable-pip-version-check", "/src"]
            run(in_root(root, *pip, cwd="/tmp"), log)
        stage = work / "stage"
        (stage / "pidproc-vm").mkdir(parents=True)
        (stage / "results").mkdir()
        env = "PIDPROC_REQUIRE_PIDFD_SPAWN=1" if k.has_pidfd_spawn else ""
        (stage / "init").write_text(INIT % {"env": env})
        (stage / "init").chmod(0o755)
        shutil.copy(REPO / "tools" / "kernels_vm.py", stage / "pidproc-vm" / "job.py")
        (stage / "pidproc-vm" / "job.json").write_text(json.dumps(job, indent=1))
        run_cpio = work / "run.cpio"
        tree_cpio = work / "tree.cpio"
        cpio_of(root, ["./src", "./venv"], tree_cpio, log)
        cpio_of(stage, ["."], run_cpio, log)
        initrd = join_cpios([image, tree_cpio, run_cpio], work / "initrd.cpio")
        tree_cpio.unlink()
        return initrd
    finally:
        for d in ("src", "venv"):
            distros.remove_tree(root / d)


# ---- booting ----

KVM_INIT = r"""
#include <sys/reboot.h>
#include <unistd.h>
int main(void) {
    write(1, "pidproc-kvm-ok\n", 15);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
"""
_accel_lock = threading.Lock()
_accel: dict[str, list[str]] = {}


def accel_for(k: Kernel, vmlinuz: Path, log: Path) -> list[str]:
    """-accel kvm when a tiny init boots under it within seconds, else TCG."""
    tcg = ["-accel", "tcg", "-cpu", "max"]
    with _accel_lock:
        if str(vmlinuz) in _accel:
            return _accel[str(vmlinuz)]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return tcg
    probe = KCACHE / "kvm-probe"
    initrd = probe / "initrd.cpio"
    with _accel_lock:
        if not initrd.exists():
            probe.mkdir(parents=True, exist_ok=True)
            src = k.suite.root / "tmp" / "pidproc-kvm-init.c"
            src.write_text(KVM_INIT)
            try:
                gcc = ["gcc", "-static", "-Os", "-o", "/tmp/pidproc-kvm-init"]
                gcc.append("/tmp/pidproc-kvm-init.c")
                run(in_root(k.suite.root, *gcc), log)
                stage = probe / "stage"
                stage.mkdir(exist_ok=True)
                shutil.move(str(k.suite.root / "tmp" / "pidproc-kvm-init"), stage / "init")
                cpio_of(stage, ["./init"], initrd.with_suffix(".partial"), log)
                initrd.with_suffix(".partial").rename(initrd)
            finally:
                src.unlink(missing_ok=True)
    out = KCACHE / "kvm-probe" / f"console-{k.name}.log"
    out.unlink(missing_ok=True)
    cmd = qemu_cmd(["-accel", "kvm", "-cpu", "host"], vmlinuz, initrd, 256, None)
    t0 = time.monotonic()
    run(cmd, out, timeout=20, check=False)
    ok = "pidproc-kvm-ok" in out.read_text(errors="replace")
    say(f"{k.name}: KVM {'works' if ok else 'does not boot this kernel'} "
        f"({time.monotonic() - t0:.1f} s; {out}): {'kvm' if ok else 'TCG'}")  # fmt: skip
    chosen = ["-accel", "kvm", "-cpu", "host"] if ok else tcg
    with _accel_lock:
        _accel[str(vmlinuz)] = chosen
    return chosen


def qemu_cmd(
    accel: list[str], vmlinuz: Path, initrd: Path, memory: int, results: Path | None
) -> list[str]:
    second = ["-serial", f"file:{results}"] if results else []
    return [
        "qemu-system-x86_64",
        *accel,
        "-smp", str(SMP), "-m", str(memory),
        "-nographic", "-nodefaults", "-no-reboot", "-monitor", "none",
        "-serial", "stdio", *second,
        "-kernel", str(vmlinuz), "-initrd", str(initrd),
        "-append", "console=ttyS0 quiet panic=-1 8250.nr_uarts=4 rdinit=/init",
    ]  # fmt: skip


def ensure_qemu(log: Path) -> None:
    wanted = (("qemu-system-x86", "qemu-system-x86_64"), ("cpio", "cpio"))
    missing = [package for package, binary in wanted if not shutil.which(binary)]
    if not missing:
        return
    say(f"host: installing {' '.join(missing)} with apt-get")
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], log, env=apt_env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], log, env=apt_env)


# ---- one kernel ----


@dataclasses.dataclass
class KernelResult:
    kernel: str
    release: str = "?"
    glibc: str = "?"
    python: str = "?"
    default_path: str = "?"
    backends: list[str] = dataclasses.field(default_factory=list)
    accel: str = "?"
    gates: dict[str, Any] = dataclasses.field(default_factory=dict)
    behaviour: dict[str, Any] = dataclasses.field(default_factory=dict)
    runs: dict[str, distros.Counts] = dataclasses.field(default_factory=dict)
    # run name -> {test id: (outcome, skip message)}
    outcomes: dict[str, dict[str, tuple[str, str]]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    file_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    vm_seconds: float = 0.0


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            out[tid] = ("failed", "")
        elif skipped is not None:
            out[tid] = ("skipped", skipped.get("message") or "")
        else:
            out[tid] = ("passed", "")
    return out


def expand(paths: list[str]) -> list[str]:
    """Test files, in pytest's order, for files and directories of the tree."""
    out = []
    for p in paths:
        where = REPO / p
        if where.is_dir():
            found = [*where.glob("test_*.py"), *where.glob("bench_*.py")]
            out += sorted(str(f.relative_to(REPO)) for f in found)
        else:
            out.append(p)
    return out


def make_job(k: Kernel, args: argparse.Namespace) -> dict[str, Any]:
    """The pytest runs, one per file so that a hung file costs only itself
    (and every file gets its own time): the suite on the default path, then
    the forced paths."""
    if args.run is not None:
        return {"mode": "run", "command": args.run, "steps": []}
    pytest = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    steps = []

    def add(group: str, f: str, extra: list[str], env: dict[str, str]) -> None:
        name = f"{group}--{Path(f).stem}"
        drop = [a for d in DESELECT if d.startswith(f"{f}::") for a in ("--deselect", d)]
        argv = [*pytest, f"--junitxml=/results/junit-{name}.xml", *extra, *drop, f]
        argv += args.pytest_args
        steps.append(
            {"name": name, "group": group, "file": f, "argv": argv, "env": env,
             "timeout": args.file_timeout}
        )  # fmt: skip

    for f in expand(args.files):
        add("suite", f, [], {})
    forced = [f for f in expand(args.forced_files) if f in distros.FORCED_FILES]
    default = "pidfd_spawn" if k.has_pidfd_spawn else "clone3"
    for name in distros.FORCED:
        if name == default:
            continue  # that is what the suite run took
        for f in forced:
            add(f"forced-{name}", f, ["-p", "tools.forced_path_plugin"], {"PIDPROC_BACKEND": name})
    return {"mode": "test", "command": "", "steps": steps, "deadline": vm_deadline(args.timeout)}


def vm_deadline(timeout: float) -> float:
    """The guest uptime by which a VM's steps must end (see RESULTS_MARGIN)."""
    return max(timeout - RESULTS_MARGIN, 0.0)


def boot(k: Kernel, args: argparse.Namespace, logs: Path, res: KernelResult, stream: bool) -> Path:
    """Build this run's image, boot it, wait; the results directory."""
    log = logs / f"kernel-{k.name}-build.log"
    log.unlink(missing_ok=True)
    distros.ensure_root(k.suite, logs, args.rebuild)
    vmlinuz = ensure_kernel(k, log)
    image = ensure_image(k.suite, log)
    accel = accel_for(k, vmlinuz, log)
    res.accel = accel[1]
    work = KCACHE / "run" / k.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        say(f"{k.name}: building this run's image ({vmlinuz.name})")
        initrd = build_initrd(k, image, make_job(k, args), distros.tree_files(), work, log)
        results_b64 = work / "results.b64"
        console = logs / f"kernel-{k.name}-console.log"
        console.unlink(missing_ok=True)
        cmd = qemu_cmd(accel, vmlinuz, initrd, MEMORY_MB, results_b64)
        say(f"{k.name}: booting ({res.accel}, {SMP} CPUs, {MEMORY_MB} MiB); console in {console}")

        def start() -> int:
            results_b64.unlink(missing_ok=True)  # a panicked boot's, if any
            if stream:
                return run_streamed(cmd, console, args.timeout)
            return run(cmd, console, timeout=args.timeout, check=False)

        rc = boot_past_a_panic(k.name, console, start, res)
        if rc == -9:
            raise StepFailed(
                f"{k.name}: the VM did not finish within {args.timeout} s and was killed "
                f"(hung); see {console}:\n{tail(console)}"
            )
        out = logs / f"kernel-{k.name}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            raw = base64.b64decode(results_b64.read_text().replace("\r", ""))
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
                tar.extractall(out, filter="data")
        except (OSError, ValueError, tarfile.TarError) as e:
            raise StepFailed(
                f"{k.name}: no results came back from the VM (qemu exit {rc}: {e}); "
                f"see {console}:\n{tail(console)}"
            ) from None
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def died_booting(console: Path) -> bool:
    """The console shows a kernel panic and no sign of our /init."""
    text = _console_text(console)
    return "Kernel panic" in text and "pidproc-vm: userland up" not in text


def tripped_on_code_patching(console: Path) -> bool:
    """The kernel died of an int3 in its own text, taken in an interrupt.
    x86 plants int3 while it patches its text (static keys, static calls:
    ``text_poke_bp``); under TCG with 2 vCPUs the other vCPU can run into it
    (seen in a timer interrupt, ``sched_clock_cpu``).  No syscall leads
    there (a kernel BUG or WARN is a ud2, "invalid opcode"), and an oops in
    a task that called into the kernel kills that task, which the tests see,
    rather than the kernel."""
    text = _console_text(console)
    return "Oops: int3" in text and "Fatal exception in interrupt" in text


def _console_text(console: Path) -> str:
    try:
        return console.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def boot_past_a_panic(who: str, console: Path, start: Callable[[], int], res: KernelResult) -> int:
    """start() the VM (its console in console) and return qemu's status,
    its time in res.vm_seconds; once more if the kernel panicked before our
    /init ran, or at any time of the emulator's code-patching trap
    (``tripped_on_code_patching``).  Seen under TCG with 2 vCPUs: an int3
    left by the kernel's own code patching (a static key flipped) hit on
    the other vCPU, at boot and, once, in a timer interrupt while the tests
    ran.  Nothing of the project's is judged by such a boot.  Any other
    panic after our code started is a failure as any other, and so is a
    second panic of either kind."""
    for attempt in (1, 2):
        t0 = time.monotonic()
        rc = start()
        res.vm_seconds = time.monotonic() - t0
        if attempt == 2:
            break
        if died_booting(console):
            why = "the kernel panicked before userland started"
        elif tripped_on_code_patching(console):
            why = "the kernel tripped on its own code patching (int3 in an interrupt)"
        else:
            break
        first = console.with_name(console.stem + "-panicked-boot.log")
        console.replace(first)
        say(f"{who}: {why} ({first}); booting again")
    return rc


def run_streamed(cmd: list[str], log: Path, timeout: float) -> int:
    """Like distros.run, the console also shown here as it comes."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
    )
    with distros._live_lock:
        distros._live.add(proc)
    timer = threading.Timer(timeout, lambda: distros.end_group(proc))
    timer.start()
    try:
        assert proc.stdout is not None
        with open(log, "ab") as out:
            for line in proc.stdout:
                out.write(line)
                text = line.decode(errors="replace").rstrip("\r\n")
                if not text.startswith("\x1b") and "SeaBIOS" not in text:
                    print(text, flush=True)
        rc = proc.wait()
        return -9 if rc == -signal.SIGKILL else rc
    except BaseException:
        distros.end_group(proc)
        raise
    finally:
        timer.cancel()
        with distros._live_lock:
            distros._live.discard(proc)


def test_kernel(k: Kernel, args: argparse.Namespace, logs: Path) -> KernelResult:
    res = KernelResult(k.name)
    t0 = time.monotonic()
    try:
        out = boot(k, args, logs, res, stream=False)
        read_vm_results(out, make_job(k, args)["steps"], res, k.name)
        for group, counts in res.runs.items():
            say(f"{k.name}: {group}: {counts} ({counts.seconds:.0f} s)")
    except StepFailed as e:
        res.problems.append(str(e))
    res.seconds = time.monotonic() - t0
    return res


def read_vm_results(out: Path, steps: list[dict[str, Any]], res: KernelResult, who: str) -> None:
    """What a VM's job (tools/kernels_vm.py) left in out, into res: the
    paths and gates it found, its behaviour probe, and each step's counts
    and problems.  A step that never ran, timed out or crashed is a
    failure; a step marked ``by_exit`` counts by its exit status alone."""
    paths = json.loads((out / "paths.json").read_text())
    if "error" in paths:
        raise StepFailed(f"{who}: {paths['error']}")
    res.release, res.glibc, res.python = paths["kernel"], paths["glibc"], paths["python"]
    res.default_path, res.backends = paths["default"], paths["backends"]
    res.gates = json.loads((out / "gates.json").read_text())
    res.behaviour = json.loads((out / "behaviour.json").read_text())
    done = out / "steps.json"
    ran = {st["name"]: st for st in json.loads(done.read_text())} if done.exists() else {}
    for step in steps:
        name, group = step["name"], step["group"]
        counts = res.runs.setdefault(group, distros.Counts())
        outcomes = res.outcomes.setdefault(group, {})
        st = ran.get(name)
        if st is None:
            why = "the VM ran out of time, or its job stopped, first"
            res.problems.append(f"{group}: {step['file']} never ran ({why})")
            counts.failed += 1
            continue
        res.file_seconds[f"{group} {step['file']}"] = st["seconds"]
        if step.get("by_exit"):
            ok = st["exit"] == 0 and not st["timed_out"]
            counts.passed += ok
            counts.failed += not ok
            counts.seconds += st["seconds"]
            if not ok:
                res.problems.append(f"{group}: {step['file']} exited {st['exit']}")
            continue
        xml = out / f"junit-{name}.xml"
        if st["timed_out"] or not xml.exists():
            why = "timed out" if st["timed_out"] else f"exited {st['exit']} without a report"
            res.problems.append(f"{group}: {step['file']} {why} after {st['seconds']} s")
            counts.failed += 1
            continue
        got = distros.junit_counts(xml)
        found = junit_outcomes(xml)
        if st["exit"] not in (0, 5) and got.failed == 0:
            got.failed = 1  # a crashed session counts as a failure
            res.problems.append(f"{group}: {step['file']} exited {st['exit']}")
        counts.passed += got.passed
        counts.failed += got.failed
        counts.skipped += got.skipped
        counts.seconds += st["seconds"]
        outcomes.update(found)
        bad = [t for t, (o, _) in found.items() if o == "failed"]
        if bad:
            res.problems.append(f"{group}: {step['file']}: failed: {', '.join(bad)}")
    if "error" in res.behaviour:
        res.problems.append(f"behaviour probe: {res.behaviour['error']}")
    else:
        res.problems += behaviour_problems(res.behaviour, res.gates)


def behaviour_problems(b: dict[str, Any], gates: dict[str, Any]) -> list[str]:
    """What pidproc did with a foreign reaper and with a process that is not
    its child (tools/kernels_vm.py's probe), against what README.md says it
    does on a kernel with these gates: each difference, worded."""

    def is_open(gate: str) -> bool:
        return bool(gates.get(gate, {}).get("open"))

    exit_kept, get_info = is_open("PIDFD_INFO_EXIT"), is_open("PIDFD_GET_INFO")
    pidfs = is_open("pidfs")
    identity = b.get("nonchild_identity", {})
    expected: list[tuple[str, bool, str]] = [
        # (what, holds, what was expected)
        ("a child reaped by someone else: wait()",
         b.get("foreign_reap_returncode") == (5 if exit_kept else 0),
         "its real status, 5" if exit_kept else "0, as the stdlib says"),
        ("PidFd.pid of a non-child", b.get("nonchild_pid_ok") is True, "its PID"),
        ("PidFd.info().pid of a non-child",
         b.get("nonchild_info_pid") is True if get_info
         else "needs Linux 6.13" in str(b.get("nonchild_info_pid")),
         "its PID" if get_info else "OSError naming Linux 6.13"),
        ("two PidFds of one non-child compare equal",
         identity.get("equal") is pidfs, "equal (pidfs)" if pidfs else "unequal (no pidfs)"),
        ("PidFd.inode of a non-child",
         isinstance(identity.get("inode"), int) if pidfs
         else "needs pidfs" in str(identity.get("inode")),
         "an inode number" if pidfs else "OSError naming pidfs"),
        ("wait() of a non-child that exits 0",
         b.get("nonchild_wait") == (0 if exit_kept else None),
         "0, once its parent reaped it" if exit_kept else "None, at its exit"),
        ("PidFd.pid after the non-child was reaped",
         b.get("nonchild_pid_after_reap") == "ProcessLookupError", "ProcessLookupError"),
    ]  # fmt: skip
    return [
        f"behaviour: {what}: expected {want}; got {json.dumps(b)}"
        for what, holds, want in expected
        if not holds
    ]


# ---- the gated tests ----


def gate_of(message: str) -> tuple[str, bool] | None:
    for pattern, gate, when_open in GATE_REASONS:
        if re.search(pattern, message):
            return gate, when_open
    return None


def gated_tests(results: list[KernelResult]) -> tuple[list[str], list[str]]:
    """(lines of the report, violations): each test that skipped for a gate
    on some kernel, and what it did on each kernel."""
    gate_by_test: dict[str, tuple[str, bool]] = {}
    for r in results:
        for name, outcomes in r.outcomes.items():
            for tid, (outcome, msg) in outcomes.items():
                g = gate_of(msg) if outcome == "skipped" else None
                if g is not None:
                    gate_by_test.setdefault(f"{name}: {tid}", g)
    lines, violations = [], []
    by_gate: dict[str, list[str]] = {}
    for key, (gate, when_open) in sorted(gate_by_test.items()):
        run_name, tid = key.split(": ", 1)
        row = []
        for r in results:
            if not r.gates or run_name not in r.outcomes:
                continue
            is_open = bool(r.gates.get(gate, {}).get("open"))
            should_skip = is_open == when_open
            outcome, msg = r.outcomes[run_name].get(tid, ("absent", ""))
            row.append(f"{r.kernel}:{outcome}")
            skipped_for_gate = outcome == "skipped" and gate_of(msg) == (gate, when_open)
            if not should_skip and skipped_for_gate:
                violations.append(
                    f"{r.kernel}: {tid} ({run_name}) skipped for {gate}, which is "
                    f"{'open' if is_open else 'closed'} here: {msg}"
                )
            if should_skip and outcome == "failed":
                violations.append(
                    f"{r.kernel}: {tid} ({run_name}) ran and failed though its gate {gate} is "
                    f"{'open' if is_open else 'closed'} here (it should have skipped)"
                )
        by_gate.setdefault(gate, []).append(f"    {tid} [{run_name}]: {' '.join(row)}")
    for gate, rows in sorted(by_gate.items()):
        lines.append(f"  {gate}: {len(rows)} tests")
        lines.extend(rows)
    return lines, violations


# ---- the report ----

REPORT_GATES = (
    "pidfs",
    "PIDFD_GET_INFO",
    "PIDFD_INFO_EXIT",
    "SO_PEERPIDFD",
    "CLONE_CLEAR_SIGHAND",
    "close_range",
    "pidfd_spawn",
    "CLONE_PIDFD_AUTOKILL",
    "CLONE_AUTOREAP",
    "CLONE_NNP",
)


def report(results: list[KernelResult], total: float) -> tuple[str, list[str]]:
    lines = [
        "",
        "| kernel | glibc | CPython | paths (default first) | suite | forced paths | gates open |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        suite = r.runs.get("suite")
        forced = ", ".join(
            f"{n.removeprefix('forced-')} {c.passed}/{c.passed + c.failed}"
            for n, c in r.runs.items()
            if n != "suite"
        )
        gates = ", ".join(g for g in REPORT_GATES if r.gates.get(g, {}).get("open")) or "none"
        paths = ", ".join(r.backends)
        lines.append(
            f"| {r.release} | {r.glibc} | {r.python} | {paths} | {suite or 'n/a'} | "
            f"{forced or 'n/a'} | {gates} |"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"{r.kernel}: {r.accel}, VM {r.vm_seconds:.0f} s, all {r.seconds:.0f} s; "
            f"behaviour {json.dumps(r.behaviour)}"
        )
        for g, v in r.gates.items():
            lines.append(f"    gate {g}: {'OPEN' if v['open'] else 'closed'} ({v['detail']})")
    gated, violations = gated_tests(results)
    lines.append("")
    lines.append("tests skipped for a missing feature somewhere, and what they did on each kernel:")
    lines.extend(gated or ["  none"])
    lines.append("")
    lines.append(f"total {total:.0f} s")
    return "\n".join(lines), violations


# ---- entry ----


def vm_parser(
    kernels: list[str], files: tuple[str, ...], files_help: str, forced_files: tuple[str, ...],
    rebuild_help: str,
) -> argparse.ArgumentParser:  # fmt: skip
    """The arguments every VM tool takes (here and tools/arm64.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kernel", action="append", choices=kernels, help="only this one (repeatable)"
    )
    parser.add_argument("--run", metavar="CMD", help="run CMD in the VM (one --kernel), no tests")
    parser.add_argument(
        "--files",
        default=" ".join(files),
        help=f"what runs on the default path (space-separated; {files_help})",
    )
    parser.add_argument(
        "--forced-files",
        default=" ".join(forced_files),
        help="what runs again on each other path (any of tools/distros.py's FORCED_FILES)",
    )
    parser.add_argument("--timeout", type=float, default=VM_TIMEOUT, help="per VM, seconds")
    parser.add_argument(
        "--file-timeout", type=float, default=FILE_TIMEOUT, help="per test file, seconds"
    )
    parser.add_argument("--rebuild", action="store_true", help=rebuild_help)
    parser.add_argument("--json", help="write the results here too")
    parser.epilog = "Arguments after -- reach pytest unchanged."
    return parser


def parse_vm_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    own, extra = distros.split_pytest_args(argv)
    args = parser.parse_args(own)
    args.pytest_args = extra
    args.files = args.files.split()
    args.forced_files = args.forced_files.split()
    if args.run is not None and len(args.kernel or ()) != 1:
        parser.error("--run needs exactly one --kernel")
    return args


def parse(argv: list[str]) -> argparse.Namespace:
    parser = vm_parser(
        sorted(KERNELS), KERNEL_FILES, '"tests bench": the whole suite', KERNEL_FORCED_FILES,
        "build the roots from scratch",
    )  # fmt: skip
    return parse_vm_args(parser, argv)


def our_children() -> list[int]:
    """The processes this one started that still exist (zombies included)."""
    kids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def end_leftovers() -> list[str]:
    """Kill (by pid) and name whatever we started that is still running: a
    VM left behind is a failure of this tool, reported as one."""
    left = []
    for pid in our_children():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        left.append(f"{pid} {cmd}")
    return left


def side_by_side(
    names: list[str], work: Callable[[str], None], also_stop: Callable[[], None] = lambda: None
) -> int | None:
    """work(name) for each VM, side by side, one thread each: None once all
    are done; after SIGINT/SIGTERM, every VM killed (and also_stop() called
    while they stop) and the exit status, 130 or 143.

    Each VM is CPU-bound under TCG, so on two free cores this is no faster
    than one after the other; on cores shared with other work it is, by the
    share of the CPU their threads get.  Each thread says it is done with an
    Event: a Thread.join() cut short by a signal can leave the thread marked
    as finished while it still runs (CPython before 3.12), and the cleanup
    must not believe that."""
    done = {name: threading.Event() for name in names}

    def one(name: str) -> None:
        try:
            work(name)
        finally:
            done[name].set()

    threads = [threading.Thread(target=one, args=(name,), name=name) for name in names]
    try:
        for t in threads:
            t.start()
        for ev in done.values():
            while not ev.wait(0.5):
                pass
    except (KeyboardInterrupt, distros.Interrupted) as e:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        say(f"interrupted ({str(e) or 'SIGINT'}): killing the VMs and what else runs")
        distros.STOPPING.set()  # no step starts from now on
        deadline = time.monotonic() + 60
        while not all(ev.is_set() for ev in done.values()) and time.monotonic() < deadline:
            distros.end_all_steps()
            also_stop()
            time.sleep(0.2)
        left = end_leftovers()
        say(f"stopped; processes left and killed: {left or 'none'}")
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    return None


def conclude(
    failures: list[str], violations: list[str], results: list[KernelResult], json_path: str | None
) -> list[str]:
    """The run's failures, with what every VM run must also leave right: the
    gates' relations, no mount and no process left behind; printed, and
    the results written to json_path if given."""
    failures = [*failures, *(f"gate relation: {v}" for v in violations)]
    left = distros.mounts_under(CACHE)
    if left:
        failures.append(f"mounts left behind: {left}")
    vms = end_leftovers()
    if vms:
        failures.append(f"processes left running (killed now): {vms}")
    if json_path:
        Path(json_path).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return failures


def main(argv: list[str]) -> int:
    if distros.lacks_root("tools/kernels.py", "chroot, mount and the roots' builds do"):
        return 2
    args = parse(argv)
    distros.enter_private_namespace(argv, __file__, NS_MARK)
    distros.stop_cleanly_on_signals()
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    distros.ensure_debootstrap(logs / "host.log")
    ensure_qemu(logs / "host.log")
    kernels = [KERNELS[n] for n in (args.kernel or list(KERNELS))]
    t0 = time.monotonic()

    if args.run is not None:
        k = kernels[0]
        res = KernelResult(k.name)
        try:
            out = boot(k, args, logs, res, stream=True)
            rc = int(json.loads((out / "run.json").read_text())["exit"])
        except StepFailed as e:
            print(f"FAILED {e}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, distros.Interrupted):
            distros.end_all_steps()
            return 130
        print(f"exit status {rc} (kernel {k.name}, {time.monotonic() - t0:.0f} s)")
        return rc

    results: dict[str, KernelResult] = {}

    def work(name: str) -> None:
        k = KERNELS[name]
        try:
            results[name] = test_kernel(k, args, logs)
        except Exception as e:  # a bug here must still fail the run, loudly
            results[name] = KernelResult(name, problems=[f"{type(e).__name__}: {e}"])

    def also_stop() -> None:
        for k in kernels:
            distros.kill_processes_in(k.suite.root)

    stopped = side_by_side([k.name for k in kernels], work, also_stop)
    if stopped is not None:
        return stopped
    flat = [results[k.name] for k in kernels if k.name in results]
    text, violations = report(flat, time.monotonic() - t0)
    print(text)
    failures = [f"{r.kernel}: {p}" for r in flat for p in r.problems]
    failures = conclude(failures, violations, flat, args.json)
    return 0 if not failures and len(flat) == len(kernels) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
