"""A full disk for one child process, without filling any disk or changing the system.

:func:`fail_file_writes_with_enospc` installs a seccomp filter in the calling
process only: from then on its ``write`` and ``writev`` calls on descriptors
above 2 fail with ENOSPC, as on a full file system (standard output and error
still work). :func:`limit_file_size` lowers the process's file-size limit, so
larger files fail with EFBIG. Call either first thing in a child process.

Examples
--------
>>> # first thing in a child (see support.children):
>>> fail_file_writes_with_enospc()  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import errno
import platform
import resource
import struct

__all__ = ["fail_file_writes_with_enospc", "limit_file_size"]

# (audit architecture, write, writev) per machine
_SYSCALLS = {"x86_64": (0xC000003E, 1, 20), "aarch64": (0xC00000B7, 64, 66)}
_LD, _JEQ, _JGT, _RET = 0x20, 0x15, 0x25, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def fail_file_writes_with_enospc() -> None:
    """Make this process's ``write``/``writev`` on descriptors above 2 fail with ENOSPC."""
    arch, write, writev = _SYSCALLS[platform.machine()]
    program = b"".join(
        [
            _instruction(_LD, 4),  # the architecture
            _instruction(_JEQ, arch, 0, 5),  # another one: allow
            _instruction(_LD, 0),  # the system call
            _instruction(_JEQ, write, 1, 0),
            _instruction(_JEQ, writev, 0, 2),  # neither write nor writev: allow
            _instruction(_LD, 16),  # its first argument, the descriptor
            _instruction(_JGT, 2, 1, 0),  # 0-2: allow; above: ENOSPC
            _instruction(_RET, _ALLOW),
            _instruction(_RET, _ERRNO | errno.ENOSPC),
        ]
    )
    libc = ctypes.CDLL(None, use_errno=True)
    filter_program = _Program(len(program) // 8, program)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(filter_program), 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def limit_file_size(nbytes: int) -> None:
    """Lower this process's file-size limit: writing past ``nbytes`` fails with EFBIG."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
