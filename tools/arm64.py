"""pidproc on aarch64: its C core and the spawn-path tests in an arm64 VM.

    python3 tools/arm64.py                       build what is missing, boot, test, report
    python3 tools/arm64.py --kernel 7.2          one kernel (repeatable)
    python3 tools/arm64.py --kernel 6.1 --run "python3 -m pytest tests/test_peer.py"
    python3 tools/arm64.py -- -k clone3          extra arguments reach pytest
    python3 tools/arm64.py --ci --ci-elapsed S   CI's bounded run (CI_FILES, kernel 7.2)

Everything else in the project runs on x86_64.  Here an arm64 Debian 12
(bookworm) userland boots under qemu-system-aarch64 (-M virt, TCG) with two
Debian cloud kernels:

    6.1   bookworm's linux-image-6.1.0-N-cloud-arm64: the release's own kernel
    7.2   sid's linux-binary-7.2.N+debN-cloud-arm64: every pidfd feature
          (pidfs, PIDFD_GET_INFO with the exit status, SO_PEERPIDFD, the new
          clone3 flags), so that the toolkit's structs and option numbers
          meet a kernel that reads them

bookworm's glibc (2.36) has no pidfd_spawn, so the default path is clone3,
through the aarch64 trampoline in src/pidproc/_c/_clone.c.

The root.  debootstrap --arch=arm64 --foreign on the host, then its second
stage and apt-get install (Python, cffi, gcc, pytest) inside the root under
qemu-user (qemu-aarch64-static).  chroot into a foreign root needs a
binfmt_misc handler; it is registered in a binfmt_misc instance of a user
namespace of our own (Linux 6.7+: each user namespace may mount its own),
never in the host's, so nothing outside this run learns to execute arm64
binaries.  That namespace maps every uid and gid onto itself; it cannot
mount proc (a container masks parts of the host's), so the mounts are made
beforehand, as root, by tools/distros.py's ``mounted``, and the debootstrap
second stage is told it runs in a container (container=lxc) so that it
does not try mknod.  Cached in /var/cache/pidproc-roots/arm64/root, rebuilt
when its recipe changes.

The kernels come from the Debian mirror through the host's own apt-get,
with an apt state of its own (sources, lists and cache under
/var/cache/pidproc-roots/arm64/apt; signatures checked against the host's
Debian archive keyring), so the host's apt configuration and architecture
list stay as they are.  Cached by package name and version.

The VM gets the root as an uncompressed initramfs (as tools/kernels.py
does, its image made with the same exclusions), plus a per-run archive with
the working tree at /src, where pidproc was built in place in the root
(``python3 build_ffi.py``, PYTHONPATH=/src/src), /init and the job.
tools/kernels_vm.py is the job, as in the x86 VMs: the kernel's features
probed directly, then one pytest run per file.  The virt board has one
serial port, and the cloud kernels build virtio-console as a module, so the
results (a tar of the junit reports) come back on the console itself,
base64 between two marker lines with their sha256, the kernel's messages
silenced (loglevel=1).

Under TCG, -cpu max emulates pointer authentication with the architected
QARMA cipher, which made the VM 3.7x slower here (a boot plus the first
spawns: 188 s against 50 s); pauth-impdef=on keeps pointer authentication
with qemu's cheaper implementation-defined algorithm.

What runs (ARM_FILES): the spawn-path files (test_backends,
test_small_stacks, test_child_state and test_pidfd_spawn_path run every path
themselves), the toolkit files whose calls carry structs or option numbers
to the kernel (test_pidfd_handle, test_peer) and test_kernel_abi (the same
numbers and layouts against the arm64 root's C headers), the lifecycle
options (test_lifecycle_options: on 7.2 the clone3 flags 7.1 added, through
the trampoline) and the Popen's own lifecycle (test_lifecycle, less its
10,000-spawn loop: ARM_DESELECT), then ARM_FORCED_FILES again
with clone, fork and pid forced by PIDPROC_BACKEND, and ``python -m
tests.child_stack`` (the child's stack use, measured on aarch64).  Under
TCG that is most of an hour with both kernels, so CI runs ``--ci``
instead: CI_FILES under 7.2 alone (about 6 minutes warm).  A root built from
nothing takes ~20 minutes of emulated dpkg: CI builds one only when the
time it has spent so far (``--ci-elapsed``, bash's $SECONDS) leaves room
for that within CI_BUDGET; after a cold start of everything else it does
not, and the arm64 run reports NOT RUN (the next, warm CI builds it).

Root is required (debootstrap, mount, unshare).  The mounts are made in a
private mount namespace and undone in finally blocks; the qemu processes run
in their own process groups and are killed with them on every way out (a
VM that outlives --timeout is killed and reported as a failure, as is one
that sends no results); the per-run image is deleted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distros  # noqa: E402
import kernels  # noqa: E402
from distros import CACHE, MIRROR, REPO, StepFailed, run, say, tail  # noqa: E402

# Bump when the root's recipe changes: the cached root is then built again.
RECIPE = 1
ACACHE = CACHE / "arm64"
ROOT = ACACHE / "root"
SUITE = "bookworm"
NS_MARK = "PIDPROC_ARM64_PRIVATE_NS"
MEMORY_MB = 3072
SMP = 2
# Under TCG on two cores shared with other work a file of the suite takes
# 10 to 15 times as long as on the host: test_small_stacks (53 s on a busy
# host) took ~12 min.  Beyond these a file, or the VM, has hung.
VM_TIMEOUT = 5400
FILE_TIMEOUT = 1800
ROOT_TIMEOUT = 3600  # one step of the root's build under qemu-user
CPU = "max,pauth-impdef=on"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

PACKAGES = (
    "python3",
    "python3-dev",
    "python3-cffi",
    "python3-setuptools",
    "python3-pytest",
    "python3-hypothesis",
    "python3-pytest-benchmark",  # pyproject's addopts name its option
    "gcc",
    "libc6-dev",
    "libseccomp2",
    "strace",
)


@dataclasses.dataclass(frozen=True)
class ArmKernel:
    name: str
    suite: str  # the Debian suite whose archive has it
    package: str  # a regular expression over that suite's package names
    vmlinuz: str  # where the package has it (a glob)


KERNELS = {
    k.name: k
    for k in (
        ArmKernel("6.1", "bookworm", r"linux-image-6\.1\.0-\d+-cloud-arm64", "boot/vmlinuz-*"),
        ArmKernel(
            "7.2", "sid", r"linux-binary-7\.2\.\d+\+deb\d+-cloud-arm64", "usr/lib/modules/*/vmlinuz"
        ),
    )
}

ARM_FILES = (
    "tests/test_backends.py",
    "tests/test_small_stacks.py",
    "tests/test_child_state.py",
    "tests/test_pidfd_spawn_path.py",
    "tests/test_security_fds.py",
    "tests/test_pidfd_handle.py",
    "tests/test_peer.py",
    "tests/test_kernel_abi.py",
    "tests/test_lifecycle_options.py",
    "tests/test_lifecycle.py",
)
# Left out as in the x86 VMs: the 10,000-spawn leak loop (217 s under TCG;
# it measures no kernel or CPU feature).
# Unlike there, test_child_state's table against the stdlib stays: on this
# CPU the trampoline sets up the child it checks.
ARM_DESELECT = ("tests/test_lifecycle.py::test_ten_thousand_spawns_leave_fd_count_flat",)
# test_child_state runs every path itself (the ``backend`` fixture): forced,
# all of it would be deselected.
ARM_FORCED_FILES = ("tests/test_security_fds.py",)
DEFAULT_PATH = "clone3"  # bookworm's glibc has no pidfd_spawn
# What CI runs (--ci): kernel 7.2 (every pidfd feature open) and the files
# that carry the trampoline and the kernel ABI: the paths and their syscalls
# (test_backends runs each path and checks its clone3/clone under strace),
# the child's state on every path, the toolkit's structs and option numbers
# against the kernel, the same against the C headers, and the lifecycle
# options (7.2 takes CLONE_PIDFD_AUTOKILL, CLONE_AUTOREAP and CLONE_NNP, and
# CLONE_INTO_CGROUP, all through the trampoline).  No forced reruns,
# no stack measurement.  Without a cached root, only if CI's time so far
# leaves room to build one (measured: 19.5 min, plus 2.5 for the kernel and
# the image) and run within CI_BUDGET.
CI_KERNEL = "7.2"
CI_BUDGET = 58 * 60
CI_ROOT_SECONDS = 25 * 60  # the root, the kernel and the image, from nothing
CI_RUN_SECONDS = 12 * 60  # the bounded run itself, warm
CI_FILES = (
    "tests/test_kernel_abi.py",
    "tests/test_pidfd_spawn_path.py",
    "tests/test_peer.py",
    "tests/test_pidfd_handle.py",
    "tests/test_backends.py",
    "tests/test_child_state.py",
    "tests/test_lifecycle_options.py",
)


# ---- chroot into the arm64 root, in a user namespace of our own ----

# binfmt_misc's register line for aarch64 ELF executables (the magic and
# mask of qemu's own scripts/qemu-binfmt-conf.sh).  F: the interpreter is
# opened now, so it need not exist inside the root.
_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_ENV = [f"{k}={v}" for k, v in distros.ENV.items() if k != "PIDPROC_REQUIRE_PIDFD_SPAWN"]


def in_root(root: Path, *cmd: str, cwd: str = "/") -> list[str]:
    """A command line that runs cmd inside the arm64 root, emulated."""
    here = str(Path(__file__).resolve())
    return [sys.executable, here, "--chroot", str(root), "--cwd", cwd, "--", *cmd]


def chroot_main(root: str, cwd: str, cmd: list[str]) -> int:
    """The other side of in_root: a child in a new user and mount namespace
    (every id mapped onto itself by us, its parent, which keeps root's
    powers outside), its own binfmt_misc with the aarch64 handler, chroot,
    exec.  Returns the child's exit status."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        print("qemu-aarch64-static is not installed", file=sys.stderr)
        return 127
    libc = ctypes.CDLL(None, use_errno=True)
    unshared_r, unshared_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(unshared_r)
            os.close(mapped_w)
            if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
            os.write(unshared_w, b"1")
            if os.read(mapped_r, 1) != b"1":
                raise OSError("the parent did not map our ids")
            libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
            where = b"/proc/sys/fs/binfmt_misc"
            if libc.mount(b"binfmt_misc", where, b"binfmt_misc", 0, None) != 0:
                raise OSError(ctypes.get_errno(), "mount binfmt_misc (Linux 6.7+ in a userns)")
            line = f":pidproc-aarch64:M::{_MAGIC}:{_MASK}:{qemu}:F"
            with open(where + b"/register", "w") as f:
                f.write(line)
            os.chroot(root)
            os.chdir(cwd)
            os.execve("/usr/bin/env", ["env", "-i", *_ENV, *cmd], {})
        except BaseException as e:
            print(f"arm64 chroot: {e}", file=sys.stderr, flush=True)
        os._exit(127)
    os.close(unshared_w)
    os.close(mapped_r)
    try:
        if os.read(unshared_r, 1) == b"1":
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write("0 0 4294967295\n")
            os.write(mapped_w, b"1")
    finally:
        os.close(mapped_w)
        os.close(unshared_r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# ---- the host's tools ----


def ensure_host_tools(log: Path) -> None:
    wanted = (
        ("qemu-system-arm", "qemu-system-aarch64"),
        ("qemu-user-static", "qemu-aarch64-static"),
        ("cpio", "cpio"),
        ("debootstrap", "debootstrap"),
    )
    missing = [package for package, binary in wanted if not shutil.which(binary)]
    if not missing:
        return
    say(f"host: installing {' '.join(missing)} with apt-get")
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], log, env=apt_env)
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    run(apt, log, env=apt_env)


# ---- the root ----


def stamp() -> dict[str, Any]:
    return {"recipe": RECIPE, "suite": SUITE, "arch": "arm64", "packages": sorted(PACKAGES)}


def recorded_stamp() -> dict[str, Any] | None:
    try:
        return dict(json.loads((ROOT / ".pidproc-root.json").read_text()))
    except (OSError, ValueError):
        return None


def root_is_usable(log: Path) -> str | None:
    recorded = recorded_stamp()
    if recorded is None:
        return "no root yet" if not ROOT.exists() else "no valid stamp"
    if {k: recorded.get(k) for k in stamp()} != stamp():
        return "the recipe changed"
    probe = "import cffi, setuptools, pytest, hypothesis, platform\n"
    probe += "assert platform.machine() == 'aarch64', platform.machine()"
    if run(in_root(ROOT, "python3", "-c", probe), log, timeout=300, check=False) != 0:
        return "its python3 cannot import what the run needs"
    return None


def build_root(log: Path) -> None:
    partial = ACACHE / "root.partial"
    distros.remove_tree(partial)
    t0 = time.monotonic()
    say(f"arm64: debootstrap --arch=arm64 --foreign {SUITE} from {MIRROR}")
    first = ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase"]
    run([*first, SUITE, partial, MIRROR], log)
    with distros.mounted(partial):
        say("arm64: debootstrap's second stage, emulated")
        second = ["env", "container=lxc", "/debootstrap/debootstrap", "--second-stage"]
        run(in_root(partial, *second), log, timeout=ROOT_TIMEOUT)
        say(f"arm64: apt-get install {len(PACKAGES)} packages, emulated")
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
        run(in_root(partial, *apt), log, timeout=ROOT_TIMEOUT)
        run(in_root(partial, "apt-get", "clean"), log)
    built = dict(stamp(), built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (partial / ".pidproc-root.json").write_text(json.dumps(built, indent=1) + "\n")
    distros.remove_tree(ROOT)
    partial.rename(ROOT)
    say(f"arm64: root built in {time.monotonic() - t0:.0f} s")


def added_packages() -> list[str]:
    """The packages the recipe gained since the cached root was built, when
    that is all that changed: installing them is minutes, a new root more
    than a quarter of an hour under emulation."""
    recorded = recorded_stamp()
    if recorded is None or not ROOT.is_dir():
        return []
    now = stamp()
    if any(recorded.get(k) != now[k] for k in now if k != "packages"):
        return []
    had = set(recorded.get("packages") or ())
    return sorted(set(PACKAGES) - had) if had < set(PACKAGES) else []


def ensure_root(log: Path, rebuild: bool) -> None:
    added = [] if rebuild else added_packages()
    if added:
        say(f"arm64: apt-get install {' '.join(added)} into the cached root, emulated")
        with distros.mounted(ROOT):
            apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *added]
            run(in_root(ROOT, *apt), log, timeout=ROOT_TIMEOUT)
            run(in_root(ROOT, "apt-get", "clean"), log)
        built = dict(recorded_stamp() or {}, **stamp())
        (ROOT / ".pidproc-root.json").write_text(json.dumps(built, indent=1) + "\n")
    why = "--rebuild" if rebuild else root_is_usable(log)
    if why is None:
        say(f"arm64: cached root {ROOT}")
        return
    say(f"arm64: building the root ({why})")
    build_root(log)
    why = root_is_usable(log)
    if why is not None:
        raise StepFailed(f"arm64: the new root is not usable: {why}; see {log}")


def ensure_image(log: Path) -> Path:
    """The root as a newc cpio, made again when the root or the recipe changes."""
    root_stamp = (ROOT / ".pidproc-root.json").read_bytes()
    key = f"{kernels.IMAGE_EXCLUDES} {kernels.EMPTIED}".encode()
    image = ACACHE / "images" / f"root-{hashlib.sha256(root_stamp + key).hexdigest()[:12]}.cpio"
    if image.exists():
        return image
    image.parent.mkdir(parents=True, exist_ok=True)
    for old in image.parent.glob("root-*"):
        old.unlink()
    say(f"arm64: packing the root into {image.name}")
    prune: list[str] = []
    for p in kernels.IMAGE_EXCLUDES:
        prune += [*(["-o"] if prune else []), "-path", p]
    inside: list[str] = []
    for p in kernels.EMPTIED:
        inside += [*(["-o"] if inside else []), "-path", f"{p}/*"]
    part = image.with_suffix(".partial")
    try:
        find = [".", "-xdev", "(", *prune, "-o", *inside, ")", "-prune", "-o", "-print"]
        kernels.cpio_of(ROOT, find, part, log)
        part.rename(image)
    finally:
        part.unlink(missing_ok=True)
    return image


# ---- the kernels, through the host's apt-get with a state of its own ----


def _apt(*args: str) -> list[str]:
    d = ACACHE / "apt"
    opts = {
        "Dir::Etc::SourceList": d / "sources.list",
        "Dir::Etc::SourceParts": d / "none",
        "Dir::Etc::Parts": d / "none",
        "Dir::Etc::Preferences": d / "none",
        "Dir::Etc::PreferencesParts": d / "none",
        "Dir::State::Lists": d / "lists",
        "Dir::State::status": d / "status",
        "Dir::Cache": d / "cache",
        "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
        # The mirror's sid Release can be past its Valid-Until.
        "Acquire::Check-Valid-Until": "false",
        "Acquire::Languages": "none",
        # Downloads land in a root-owned directory: no _apt sandbox user.
        "APT::Sandbox::User": "root",
    }
    return [args[0], *(f"-o{k}={v}" for k, v in opts.items()), *args[1:]]


def _apt_update(log: Path) -> None:
    d = ACACHE / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "none"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "status").touch()
    suites = sorted({k.suite for k in KERNELS.values()})
    (d / "sources.list").write_text(
        "".join(f"deb [signed-by={KEYRING}] {MIRROR} {s} main\n" for s in suites)
    )
    run(_apt("apt-get", "update", "-q"), log, timeout=600)


def kernel_package(k: ArmKernel, log: Path) -> tuple[str, str]:
    """The newest (name, version) in k's suite matching k.package."""
    for attempt in (1, 2):
        if (ACACHE / "apt" / "lists").is_dir():
            found = kernels.newest_package(lambda *a: _apt("apt-cache", *a), k.package)
            if found:
                return found
        if attempt == 1:
            _apt_update(log)
    raise StepFailed(f"arm64 {k.name}: no package matching {k.package} in {k.suite}")


def ensure_kernel(k: ArmKernel, log: Path) -> Path:
    name, version = kernel_package(k, log)
    dest = ACACHE / "vmlinuz" / f"{name}_{version}"
    if dest.exists():
        return dest
    dl = ACACHE / "download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir(parents=True)
    try:
        say(f"arm64 {k.name}: apt-get download {name} ({version})")
        # apt-get download writes to the working directory.
        get = ["env", "-C", str(dl), *_apt("apt-get", "download", "-q", f"{name}={version}")]
        if run(get, log, check=False, timeout=600) != 0:
            _apt_update(log)  # the lists named a file the mirror no longer has
            run(get, log, timeout=600)
        kernels.vmlinuz_from_deb(dl, k.vmlinuz, dest, log, f"arm64 {k.name}")
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    return dest


# ---- this run's image ----

INIT = (
    r"""#!/bin/sh
# /init of a tools/arm64.py VM: mounts, the job, the results out on the
# console between two marker lines, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb PYTHONPATH=/src/src
"""
    + kernels.VM_SETUP
    + r"""echo "pidproc-vm: userland up $(cut -d" " -f1 /proc/uptime) s, $(uname -r) $(uname -m)"
python3 /pidproc-vm/job.py
echo "pidproc-vm: job exit $?"
(cd /results && tar czf /tmp/results.tgz .)
echo "pidproc-results-begin $(sha256sum < /tmp/results.tgz | cut -d" " -f1)"
base64 /tmp/results.tgz
echo "pidproc-results-end"
echo o > /proc/sysrq-trigger
sleep 60
"""
)


def make_job(args: argparse.Namespace) -> dict[str, Any]:
    """One pytest run per file (a hung file costs only itself): the files on
    the default path, then ARM_FORCED_FILES on each other path, then the
    child's stack use."""
    if args.run is not None:
        return {"mode": "run", "command": args.run, "steps": []}
    pytest = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    steps: list[dict[str, Any]] = []

    def add(group: str, f: str, extra: list[str], env: dict[str, str]) -> None:
        name = f"{group}--{Path(f).stem}"
        drop = [a for d in ARM_DESELECT if d.startswith(f"{f}::") for a in ("--deselect", d)]
        argv = [*pytest, f"--junitxml=/results/junit-{name}.xml", *extra, *drop, f]
        argv += args.pytest_args
        steps.append(
            {"name": name, "group": group, "file": f, "argv": argv, "env": env,
             "timeout": args.file_timeout}
        )  # fmt: skip

    for f in kernels.expand(args.files):
        add("suite", f, [], {})
    forced = [f for f in kernels.expand(args.forced_files) if f in distros.FORCED_FILES]
    for name in distros.FORCED:
        if name == DEFAULT_PATH:
            continue  # that is what the suite run took
        for f in forced:
            add(f"forced-{name}", f, ["-p", "tools.forced_path_plugin"], {"PIDPROC_BACKEND": name})
    if not args.pytest_args and not args.ci:
        stack = "python3 -m tests.child_stack > /results/child-stack.txt 2>&1"
        steps.append(
            {"name": "child-stack", "group": "child-stack", "file": "tests/child_stack.py",
             "argv": ["sh", "-c", stack], "env": {}, "timeout": args.file_timeout,
             "by_exit": True}
        )  # fmt: skip
    return {
        "mode": "test", "command": "", "steps": steps, "deadline": kernels.vm_deadline(args.timeout)
    }  # fmt: skip


def build_initrd(image: Path, job: dict[str, Any], work: Path, log: Path) -> Path:
    """The root image plus this run's archive: the tree (pidproc built in
    place, in the root, emulated), /init and the job."""
    src = ROOT / "src"
    distros.remove_tree(src)
    try:
        distros.copy_tree(distros.tree_files(), src)
        with distros.mounted(ROOT):
            run(in_root(ROOT, "python3", "build_ffi.py", cwd="/src"), log, timeout=ROOT_TIMEOUT)
        stage = work / "stage"
        (stage / "pidproc-vm").mkdir(parents=True)
        (stage / "results").mkdir()
        (stage / "init").write_text(INIT)
        (stage / "init").chmod(0o755)
        shutil.copy(REPO / "tools" / "kernels_vm.py", stage / "pidproc-vm" / "job.py")
        (stage / "pidproc-vm" / "job.json").write_text(json.dumps(job, indent=1))
        tree_cpio, run_cpio = work / "tree.cpio", work / "run.cpio"
        kernels.cpio_of(ROOT, ["./src"], tree_cpio, log)
        kernels.cpio_of(stage, ["."], run_cpio, log)
        initrd = kernels.join_cpios([image, tree_cpio, run_cpio], work / "initrd.cpio")
        tree_cpio.unlink()
        return initrd
    finally:
        distros.remove_tree(src)


# ---- booting ----


def qemu_cmd(vmlinuz: Path, initrd: Path) -> list[str]:
    return [
        "qemu-system-aarch64",
        "-M", "virt", "-cpu", CPU, "-accel", "tcg",
        "-smp", str(SMP), "-m", str(MEMORY_MB),
        "-nographic", "-nodefaults", "-no-reboot", "-monitor", "none",
        "-serial", "stdio",
        "-kernel", str(vmlinuz), "-initrd", str(initrd),
        "-append", "console=ttyAMA0 loglevel=1 panic=-1 rdinit=/init",
    ]  # fmt: skip


def results_from_console(console: Path, out: Path) -> None:
    """Unpack the tar the VM printed between its markers into out."""
    lines = console.read_text(errors="replace").replace("\r", "").splitlines()
    begin = [i for i, ln in enumerate(lines) if ln.startswith("pidproc-results-begin ")]
    end = [i for i, ln in enumerate(lines) if ln == "pidproc-results-end"]
    if not begin or not end or end[-1] < begin[-1]:
        raise ValueError("no results between the markers")
    digest = lines[begin[-1]].split()[1]
    raw = base64.b64decode("".join(lines[begin[-1] + 1 : end[-1]]), validate=True)
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ValueError("the results' sha256 does not match (console output interleaved?)")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        tar.extractall(out, filter="data")


def boot(
    k: ArmKernel, vmlinuz: Path, initrd: Path, args: argparse.Namespace, logs: Path,
    res: kernels.KernelResult,
) -> Path:  # fmt: skip
    """Boot one VM on the shared initrd and wait; its results directory."""
    console = logs / f"arm64-{k.name}-console.log"
    console.unlink(missing_ok=True)
    say(f"arm64 {k.name}: booting {vmlinuz.name} (TCG {CPU}, {SMP} CPUs); console in {console}")
    rc = kernels.boot_past_a_panic(
        f"arm64 {k.name}",
        console,
        lambda: run(qemu_cmd(vmlinuz, initrd), console, timeout=args.timeout, check=False),
        res,
    )
    if rc == -9:
        raise StepFailed(
            f"arm64 {k.name}: the VM did not finish within {args.timeout:.0f} s and was killed "
            f"(hung); see {console}:\n{tail(console)}"
        )
    out = logs / f"arm64-{k.name}"
    try:
        results_from_console(console, out)
    except (OSError, ValueError, tarfile.TarError) as e:
        raise StepFailed(
            f"arm64 {k.name}: no results came back from the VM (qemu exit {rc}: {e}); "
            f"see {console}:\n{tail(console)}"
        ) from None
    return out


def read_results(k: ArmKernel, out: Path, job: dict[str, Any], res: kernels.KernelResult) -> None:
    """The counts and problems of one VM's results, as tools/kernels.py reads
    them, and whether a plain spawn took the path this CPU should take."""
    kernels.read_vm_results(out, job["steps"], res, f"arm64 {k.name}")
    if res.default_path != DEFAULT_PATH:
        reasons = json.loads((out / "paths.json").read_text()).get("reasons")
        res.problems.append(f"a plain spawn took {res.default_path}, not {DEFAULT_PATH}: {reasons}")


def skips(res: kernels.KernelResult) -> list[str]:
    """Each distinct skip reason of a run, with how many tests gave it."""
    reasons: dict[str, int] = {}
    for outcomes in res.outcomes.values():
        for outcome, msg in outcomes.values():
            if outcome == "skipped":
                reasons[msg] = reasons.get(msg, 0) + 1
    return [f"    {n} x {msg}" for msg, n in sorted(reasons.items(), key=lambda kv: -kv[1])]


# ---- entry ----


def parse(argv: list[str]) -> argparse.Namespace:
    parser = kernels.vm_parser(
        sorted(KERNELS), ARM_FILES, '"tests" for the whole suite', ARM_FORCED_FILES,
        "build the root from scratch",
    )  # fmt: skip
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--ci",
        action="store_true",
        help=f"CI's bounded run: kernel {CI_KERNEL}, CI_FILES; a root is built only in budget",
    )
    parser.add_argument(
        "--ci-elapsed",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --ci: how long CI has run so far (the root is built only if it fits)",
    )
    args = kernels.parse_vm_args(parser, argv)
    if args.ci:
        if args.run is not None or args.rebuild:
            parser.error("--ci runs the tests, on the cached root")
        args.kernel = [CI_KERNEL]
        args.files = list(CI_FILES)
        args.forced_files = []
    return args


def ci_cannot_build(args: argparse.Namespace, why: str) -> bool:
    """With --ci and no usable root: True (and says so) when building one
    would take CI past CI_BUDGET."""
    need = args.ci_elapsed + CI_ROOT_SECONDS + CI_RUN_SECONDS
    if need <= CI_BUDGET:
        say(f"arm64 (--ci): {why}; CI at {args.ci_elapsed / 60:.0f} min has room to build it")
        return False
    say(f"arm64: NOT RUN (--ci): no usable cached root ({why}), and CI at")
    say(f"{args.ci_elapsed / 60:.0f} min has no room to build one (~{CI_ROOT_SECONDS // 60} min")
    say(f"under emulation, then ~{CI_RUN_SECONDS // 60} min to run; budget {CI_BUDGET // 60} min)")
    return True


def main(argv: list[str]) -> int:
    if argv[:1] == ["--chroot"]:  # in_root's second half, in a fresh interpreter
        root, cwd, cmd = argv[1], argv[3], argv[5:]
        return chroot_main(root, cwd, cmd)
    if distros.lacks_root("tools/arm64.py", "debootstrap, mount and unshare do"):
        return 2
    args = parse(argv)
    distros.enter_private_namespace(argv, __file__, NS_MARK)
    distros.stop_cleanly_on_signals()
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "arm64-build.log"
    log.unlink(missing_ok=True)
    chosen = [KERNELS[n] for n in (args.kernel or list(KERNELS))]
    t0 = time.monotonic()
    results = {k.name: kernels.KernelResult(k.name, accel="tcg") for k in chosen}
    work = ACACHE / "run"
    job = make_job(args)
    try:
        if args.ci and recorded_stamp() is None and ci_cannot_build(args, "no root yet"):
            return 0
        ensure_host_tools(logs / "host.log")
        if args.ci and recorded_stamp() is not None and not added_packages():
            why = root_is_usable(log)
            if why is not None and ci_cannot_build(args, why):
                return 0
        ensure_root(log, args.rebuild)
        vmlinuz = {k.name: ensure_kernel(k, log) for k in chosen}
        image = ensure_image(log)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        say("arm64: building pidproc in the root and this run's image")
        initrd = build_initrd(image, job, work, log)
        say(f"arm64: ready after {time.monotonic() - t0:.0f} s")
    except StepFailed as e:
        shutil.rmtree(work, ignore_errors=True)
        print(f"FAILED {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, distros.Interrupted):
        distros.end_all_steps()
        shutil.rmtree(work, ignore_errors=True)
        return 130

    def work_on(name: str) -> None:
        k, res = KERNELS[name], results[name]
        t1 = time.monotonic()
        try:
            out = boot(k, vmlinuz[name], initrd, args, logs, res)
            if args.run is None:
                read_results(k, out, job, res)
            else:
                res.behaviour = json.loads((out / "run.json").read_text())
        except StepFailed as e:
            res.problems.append(str(e))
        except Exception as e:  # a bug here must still fail the run, loudly
            res.problems.append(f"{type(e).__name__}: {e}")
        finally:
            res.seconds = time.monotonic() - t1

    try:
        stopped = kernels.side_by_side([k.name for k in chosen], work_on)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if stopped is not None:
        return stopped

    flat = [results[k.name] for k in chosen]
    failures = [f"arm64 {r.kernel}: {p}" for r in flat for p in r.problems]
    if args.run is not None:
        r = flat[0]
        print((logs / f"arm64-{r.kernel}-console.log").read_text(errors="replace"))
        rc = int(r.behaviour.get("exit", 1)) if not failures else 1
        for f in failures:
            print(f"FAILED {f}", file=sys.stderr)
        print(f"exit status {rc} (arm64, kernel {r.kernel}, {time.monotonic() - t0:.0f} s)")
        return rc
    text, violations = kernels.report(flat, time.monotonic() - t0)
    print(text)
    for r in flat:
        say(f"arm64 {r.kernel}: " + ", ".join(f"{g}: {c}" for g, c in r.runs.items()))
        print("  skipped, by reason:")
        print("\n".join(skips(r)) or "    none")
        stack = logs / f"arm64-{r.kernel}" / "child-stack.txt"
        if stack.exists():
            print(f"  python -m tests.child_stack on {r.kernel}:")
            print("    " + stack.read_text().strip().replace("\n", "\n    "))
        for name, seconds in r.file_seconds.items():
            print(f"    {seconds:7.1f} s  {name}")
    failures = kernels.conclude(failures, violations, flat, args.json)
    return 0 if not failures else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(sys.argv[1:]))
