"""Unix socket peers as PidFds: SO_PEERPIDFD and SCM_PIDFD (Linux 6.5+)."""

from __future__ import annotations

import array
import errno
import json
import os
import socket
import subprocess
import textwrap
from collections.abc import Iterator

import pytest

import pidproc
from pidproc import _peer as pidproc_peer
from pidproc import _pidfd

from ._support import seccomp
from ._support.leaks import collect, open_fds
from ._support.programs import program
from .conftest import PY


def _kernel_has_peer_pidfd() -> bool:
    a, b = socket.socketpair()
    with a, b:
        try:
            os.close(a.getsockopt(socket.SOL_SOCKET, 77))
        except OSError as e:
            if e.errno == errno.ENOPROTOOPT:
                return False
            raise
    return True


pytestmark = pytest.mark.skipif(
    not _kernel_has_peer_pidfd(), reason="kernel has no SO_PEERPIDFD/SCM_PIDFD (Linux 6.5+)"
)
needs_exit_info = pytest.mark.skipif(
    not _pidfd._EXIT_INFO_KEPT, reason="kernel keeps no exit status (PIDFD_INFO_EXIT, Linux 6.15+)"
)


_names = iter(range(1 << 30))


@pytest.fixture
def name() -> str:
    """A fresh abstract unix address, without its leading NUL (so that it
    can travel in argv): nothing on disk to clean up."""
    return f"pidproc-test-{os.getpid()}-{next(_names)}"


def test_peer_of_a_socketpair_is_ourselves() -> None:
    a, b = socket.socketpair()
    with a, b, pidproc.PidFd.open(os.getpid()) as me:
        for end in (a, b):
            with pidproc.peer_pidfd(end) as peer:
                assert peer.pid == os.getpid()
                assert peer == me


def test_peer_across_a_connection(name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        p = pidproc.Popen(
            [PY, program("peer_client"), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdin is not None and p.stdout is not None
        conn, _ = server.accept()
        with conn, pidproc.peer_pidfd(conn) as peer:
            assert peer.pid == p.pid
            with pidproc.PidFd.from_popen(p) as direct:
                assert (peer == direct) is _pidfd._pidfs()  # identity needs pidfs (6.9)
            # The client sees us: the process that called listen().
            assert int(p.stdout.readline()) == os.getpid()
            p.stdin.write("\n")
            p.stdin.flush()
            assert peer.wait(timeout=10) == 9  # our child: the PidFd reaps it
        # The Popen learns the real status where the kernel keeps it (6.15+),
        # else 0, as the stdlib for a child reaped behind its back.
        assert p.wait() == (9 if _pidfd._EXIT_INFO_KEPT else 0)
        p.stdin.close()
        p.stdout.close()


@needs_exit_info
def test_peer_that_exited_keeps_its_identity_and_status(name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        code = "import socket, sys; s = socket.socket(socket.AF_UNIX); "
        code += "s.connect('\\0' + sys.argv[1]); sys.exit(12)"
        p = pidproc.Popen([PY, "-c", code, name])
        conn, _ = server.accept()
        assert p.wait() == 12  # gone and reaped before we ask who it was
        with conn, pidproc.peer_pidfd(conn) as peer:
            with pytest.raises(ProcessLookupError):
                peer.pid  # noqa: B018
            assert peer.wait(timeout=10) == 12


def test_peer_pidfd_errors() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lone:
        with pytest.raises(OSError) as e:
            pidproc.peer_pidfd(lone)
        assert e.value.errno == errno.ENODATA and "not connected" in str(e.value)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as inet:
        with pytest.raises(ValueError, match="AF_UNIX"):
            pidproc.peer_pidfd(inet)


@pytest.mark.skipif(not seccomp.available(), reason="no libseccomp.so.2")
def test_a_kernel_without_peer_pidfds_is_named() -> None:
    # What a kernel before 6.5 answers for an unknown socket option.
    rules = {
        "getsockopt": (errno.ENOPROTOOPT, 2, "==", pidproc_peer.SO_PEERPIDFD),
        "setsockopt": (errno.ENOPROTOOPT, 2, "==", pidproc_peer.SO_PASSPIDFD),
    }
    r = seccomp.run_filtered(rules, program=program("peer_old_kernel"))
    assert r.returncode == 0, r.stderr
    for err, message in json.loads(r.stdout):
        assert err == errno.ENOPROTOOPT and "Linux 6.5" in message, message


SENDER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(sys.argv[2].encode(), "\\0" + sys.argv[1])
    sys.exit(int(sys.argv[3]))
    """
)


def test_recv_with_pidfd_names_each_sender(name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        pidproc.set_pass_pidfd(server)
        senders = [pidproc.Popen([PY, "-c", SENDER, name, f"msg{i}", str(i)]) for i in range(3)]
        got = {}
        for _ in senders:
            data, sender = pidproc.recv_with_pidfd(server, 100)
            assert sender is not None
            got[data.decode()] = sender
        for i, p in enumerate(senders):
            sender = got[f"msg{i}"]
            # The pidfd names the sender even if it has exited meanwhile.
            assert sender.wait(timeout=10) == i
            assert p.wait() == (i if _pidfd._EXIT_INFO_KEPT else 0)  # 0: no status kept
            sender.close()
        assert len({id(s) for s in got.values()}) == 3


@needs_exit_info
def test_recv_from_a_sender_long_gone(name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        pidproc.set_pass_pidfd(server)
        p = subprocess.Popen([PY, "-c", SENDER, name, "bye", "21"])
        assert p.wait() == 21  # exited and reaped by the stdlib, PID free for reuse
        data, sender = pidproc.recv_with_pidfd(server, 100)
        assert data == b"bye" and sender is not None
        with sender:
            with pytest.raises(ProcessLookupError):
                sender.pid  # noqa: B018
            assert sender.wait(timeout=10) == 21


def test_message_sent_before_passing_was_on_has_no_pidfd() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(b"early")
        data, sender = pidproc.recv_with_pidfd(b, 100)  # turns passing on: too late
        assert (data, sender) == (b"early", None)
        a.send(b"late")
        data, sender = pidproc.recv_with_pidfd(b, 100)
        assert data == b"late" and sender is not None
        with sender, pidproc.PidFd.open(os.getpid()) as me:
            assert sender == me


def test_passing_is_inherited_by_accepted_sockets(name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        pidproc.set_pass_pidfd(server)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect("\0" + name)
            conn, _ = server.accept()
            with conn:
                assert conn.getsockopt(socket.SOL_SOCKET, 76) == 1
                client.sendall(b"hello")
                data, sender = pidproc.recv_with_pidfd(conn, 100)
                assert data == b"hello" and sender is not None
                assert sender.pid == os.getpid()
                sender.close()


def test_passed_fds_are_closed_not_leaked() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        pidproc.set_pass_pidfd(b)
        r, w = os.pipe()
        try:
            fds = array.array("i", [r, w])
            a.sendmsg([b"with fds"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        finally:
            os.close(r)
            os.close(w)
        before = open_fds()
        data, sender = pidproc.recv_with_pidfd(b, 100)
        assert data == b"with fds" and sender is not None
        assert open_fds() - before == {sender.fileno()}
        sender.close()


def test_pidfd_from_ancdata_with_recvmsg() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        pidproc.set_pass_pidfd(b)
        a.send(b"x")
        _, ancdata, _, _ = b.recvmsg(10, socket.CMSG_SPACE(4))
        sender = pidproc.pidfd_from_ancdata(ancdata)
        assert sender is not None and sender.pid == os.getpid()
        sender.close()
        assert pidproc.pidfd_from_ancdata([]) is None


@pytest.fixture(autouse=True)
def _no_fd_left() -> Iterator[None]:

    before = open_fds()
    yield
    collect()
    left = {fd for fd in open_fds() - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not left, f"fds left open: {left}"
