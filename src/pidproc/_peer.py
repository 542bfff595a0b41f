"""Who is on the other end of a unix socket, as a PidFd (Linux 6.5+).

``SO_PEERPIDFD`` gives a pidfd of the peer recorded at connect()/
socketpair()/listen() time, ``SCM_PIDFD`` one of the sender of each message
(when the receiver set ``SO_PASSPIDFD``).  Unlike SO_PEERCRED's or
SCM_CREDENTIALS' PID, the pidfd keeps naming that process after it exits
and its PID is reused, so a server can check or signal its client without
a race.  From Linux 6.15 (pidfs) the pidfd comes even when the peer has
already exited and been reaped, and its exit status is readable.

The option numbers are those of asm-generic (x86, arm, riscv, ...), which
alpha and mips share; parisc and sparc number them differently.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import sys

from ._pidfd import PidFd
from ._pidfd_sys import os_error as _error

SO_PASSPIDFD = 76
SO_PEERPIDFD = 77
SCM_PIDFD = 0x04

_INT_SIZE = array.array("i").itemsize
# Room for the pidfd, SCM_CREDENTIALS (if SO_PASSCRED is on too) and a few
# passed fds, which recv_with_pidfd closes.
_ANCBUFSIZE = socket.CMSG_SPACE(_INT_SIZE) + socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16 * 4)


def _needs_unix(sock: socket.socket) -> None:
    if sock.family != socket.AF_UNIX:
        raise ValueError(f"peer pidfds exist only for AF_UNIX sockets, not {sock.family!r}")


def _sockopt_error(e: OSError, option: str) -> OSError:
    err = e.errno or 0
    if err == errno.ENOPROTOOPT:
        return _error(err, f"{option} needs Linux 6.5")
    if err == errno.ESRCH:
        return _error(err, "the peer has exited (Linux 6.15+ still names it)")
    if err == errno.ENODATA:
        return _error(err, "the socket has no peer credentials (not connected?)")
    return e


def peer_pidfd(sock: socket.socket) -> PidFd:
    """A PidFd of the process on the other end of a connected unix socket
    (SO_PEERPIDFD, Linux 6.5): the one that called connect() or
    socketpair(), or, for the client, the one that called listen()."""
    _needs_unix(sock)
    try:
        fd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as e:
        raise _sockopt_error(e, "SO_PEERPIDFD") from None
    return PidFd(fd)


def set_pass_pidfd(sock: socket.socket, enable: bool = True) -> None:
    """Turn SO_PASSPIDFD on (Linux 6.5): every message sent to ``sock`` from
    then on carries a pidfd of its sender.  Set it on a listening socket and
    the accepted ones inherit it."""
    _needs_unix(sock)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSPIDFD, int(enable))
    except OSError as e:
        raise _sockopt_error(e, "SO_PASSPIDFD") from None


def pidfd_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> PidFd | None:
    """The sender's PidFd from the ancillary data of ``sock.recvmsg()``,
    or None if there is none (SO_PASSPIDFD was off when it was sent)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_PIDFD and len(data) >= _INT_SIZE:
            return PidFd(int.from_bytes(data[:_INT_SIZE], sys.byteorder))
    return None


def recv_with_pidfd(
    sock: socket.socket, bufsize: int, flags: int = 0
) -> tuple[bytes, PidFd | None]:
    """Receive a message and a PidFd of the process that sent it.

    Turns SO_PASSPIDFD on if it is off; a message already queued before
    that carries no pidfd and comes with None.  On a stream socket the
    kernel never merges the bytes of two senders into one call.  File
    descriptors passed along with SCM_RIGHTS are closed: to keep them, call
    ``sock.recvmsg`` yourself and use ``pidfd_from_ancdata``."""
    _needs_unix(sock)
    try:
        passing = sock.getsockopt(socket.SOL_SOCKET, SO_PASSPIDFD)
    except OSError as e:
        raise _sockopt_error(e, "SO_PASSPIDFD") from None
    if not passing:
        set_pass_pidfd(sock)
    data, ancdata, _msg_flags, _addr = sock.recvmsg(
        bufsize, _ANCBUFSIZE, flags | socket.MSG_CMSG_CLOEXEC
    )
    _close_passed_fds(ancdata)
    return data, pidfd_from_ancdata(ancdata)


def _close_passed_fds(ancdata: list[tuple[int, int, bytes]]) -> None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % _INT_SIZE])
            for fd in fds:
                os.close(fd)
