"""One owner per database folder: an exclusive OS lock on ``<folder>/LOCK``.

Two servers on one folder would both append to the journal and replace the
accounts file; worse, the second one's recovery would take the first one's
write in progress for a torn tail and cut it away. So whoever opens a store
first takes this lock, before it reads or changes any file, and holds it for
as long as the store is open. The lock is the kernel's (``flock`` on POSIX,
``msvcrt.locking`` on Windows), so it is released when the process dies,
however it dies: a kill -9 never leaves a stale lock behind.

The file's content, the owner's process id and host name, is only a hint for
the message a refused opener prints; the lock itself is what counts.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Optional

LOCK_FILE = "LOCK"


class DatabaseLocked(Exception):
    """Another process holds the database folder; the message says which, if known."""

    def __init__(self, directory: str, owner: Optional[str]) -> None:
        who = f" by {owner}" if owner else " by another process"
        super().__init__(f"the database {os.path.abspath(directory)} is in use{who}; "
                         "stop that server first, or start this one with another --db")
        self.directory = directory
        self.owner = owner


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - not run on this CI
        import msvcrt
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _read_owner(fd: int) -> Optional[str]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 256).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


class DatabaseLock:
    """The held lock; ``release`` (or process exit) gives it up."""

    def __init__(self, directory: str) -> None:
        """Take the lock on ``directory`` (which must exist) or raise DatabaseLocked."""
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        if not _try_lock(fd):
            owner = _read_owner(fd)
            os.close(fd)
            raise DatabaseLocked(directory, owner)
        self._fd: Optional[int] = fd
        if sys.platform != "win32":  # Windows locks byte 0: no hint written there
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
            except OSError:
                pass  # the hint is optional; the lock is held

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases it); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
