"""The narrow file layer: every byte the store reads or writes goes through it.

The store's durability promises rest on a handful of operating-system calls
(append, fsync, rename, directory fsync). Keeping them behind one small class
lets the tests swap in a layer that fails at a chosen step or simulates a
power cut, in the manner of SQLite's fault-injection VFS, while the store
itself stays unchanged.

``FileLayer`` declares the primitives. ``replace_atomic`` is built from them
here, once, so a test layer that fakes the primitives also exercises the
order in which the real replacement happens. ``read_chunks`` is built on
``open_read`` the same way: the store reads its journals in bounded pieces
and its message bodies by position, never a whole journal at once.
"""
from __future__ import annotations

import errno
import os
import secrets
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional, Protocol, Tuple

from ..dblock import DatabaseLock

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_DIRECTORY = getattr(os, "O_DIRECTORY", None)  # absent on Windows: no directory fsync
#: fdatasync skips metadata that is not needed to read the data back (mtime), but
#: still covers the file size, which is what an append changes.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_UNSUPPORTED = {errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL),
                getattr(errno, "EOPNOTSUPP", errno.EINVAL)}
#: How long to retry ``os.replace`` on Windows, where a reader (a virus scanner,
#: an editor) holding the target open makes it fail with PermissionError.
REPLACE_RETRY_SECONDS = 1.0
#: How much of a journal ``read_chunks`` holds at once.
CHUNK_BYTES = 1 << 20


class FileHandle(Protocol):
    """An open file, written from its end."""

    def write(self, data: bytes) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class FileReader(Protocol):
    """An open file, read by position; several threads may read at once."""

    def size(self) -> int:
        """The file's current size in bytes."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer only at the end of the file)."""
        ...

    def close(self) -> None: ...


class FolderLock(Protocol):
    """A held lock on a database folder (see ``chat.dblock``)."""

    def release(self) -> None: ...


class FileLayer:
    """The seam between the store and the disk.

    Paths are plain strings. Every method raises ``OSError`` (or a subclass
    such as ``FileNotFoundError``) when the disk says no.
    """

    def makedirs(self, directory: str) -> None:
        """Create ``directory`` and its parents unless they exist."""
        raise NotImplementedError

    def lock(self, directory: str) -> FolderLock:
        """Take the exclusive lock on ``directory`` (which exists) until ``release``.

        Raises ``chat.dblock.DatabaseLocked`` when another owner holds it. A
        layer that fakes the disk may return a lock that does nothing.
        """
        raise NotImplementedError

    def list_dir(self, directory: str) -> List[str]:
        """The names of the entries in ``directory``."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        """The whole file; FileNotFoundError if there is none."""
        raise NotImplementedError

    def open_append(self, path: str) -> FileHandle:
        """Open ``path`` for appending, creating it (empty) if missing."""
        raise NotImplementedError

    def open_read(self, path: str) -> FileReader:
        """Open ``path`` for positioned reads; FileNotFoundError if there is none."""
        raise NotImplementedError

    def create_temp(self, directory: str, prefix: str) -> Tuple[str, FileHandle]:
        """Create a new, empty, uniquely named file in ``directory``: (path, handle).

        The name starts with ``prefix`` and ends with ``.tmp``.
        """
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        """Atomically make ``dst`` name what ``src`` named, replacing any old ``dst``."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def truncate(self, path: str, size: int) -> None:
        """Cut ``path`` to ``size`` bytes; durable when it returns."""
        raise NotImplementedError

    def fsync_dir(self, directory: str) -> None:
        """Make the entries of ``directory`` (creations, renames) durable."""
        raise NotImplementedError

    def replace_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` so that a crash at any moment leaves the old
        content or the new one, never a mixture; durable when it returns.

        Temp file in the same folder, written and fsynced, renamed over the
        target, then the folder fsynced so that the rename itself survives.
        """
        directory, name = os.path.split(path)
        directory = directory or "."
        tmp, handle = self.create_temp(directory, name + ".")
        try:
            try:
                handle.write(data)
                handle.sync()
            finally:
                handle.close()
            self.rename(tmp, path)
        except BaseException:
            self._discard(tmp)
            raise
        self.fsync_dir(directory)

    def read_chunks(self, reader: FileReader, chunk: int = CHUNK_BYTES
                    ) -> Iterator[Tuple[bytes, int]]:
        """The file as (buffer, offset of its first byte), in order, a chunk at a time.

        Every buffer but the last ends with a newline, so no line is split
        across two (a line longer than ``chunk`` makes a longer buffer); the
        last holds whatever follows the last newline, if anything does.
        """
        offset, carry = 0, b""
        while True:
            data = reader.read_at(offset + len(carry), chunk)
            if not data:
                break
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            if cut == len(buf):
                carry = b""
                yield buf, offset
            elif cut:
                carry = buf[cut:]
                yield buf[:cut], offset
            else:
                carry = buf
                continue
            offset += cut
        if carry:
            yield carry, offset

    def _discard(self, path: str) -> None:
        try:
            self.remove(path)
        except OSError:
            pass


class OsFile:
    """A raw file descriptor: unbuffered, so ``write`` needs no separate flush."""

    def __init__(self, fd: int, sync: Callable[[int], None] = _datasync) -> None:
        self._fd = fd
        self._sync = sync

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def sync(self) -> None:
        self._sync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class OsReader:
    """A read-only descriptor read with ``pread`` (seek and read under a lock on Windows)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._seek_lock: Optional[threading.Lock] = (
            None if hasattr(os, "pread") else threading.Lock())

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read_at(self, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            part = self._pread(offset, size)
            if not part:
                break
            parts.append(part)
            offset += len(part)
            size -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _pread(self, offset: int, size: int) -> bytes:
        if self._seek_lock is None:
            return os.pread(self._fd, size, offset)
        with self._seek_lock:  # pragma: no cover - Windows
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, size)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class OsFileLayer(FileLayer):
    """The real file layer (POSIX and Windows)."""

    #: Files hold password hashes and private messages: owner only.
    mode = 0o600

    def makedirs(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)

    def lock(self, directory: str) -> DatabaseLock:
        return DatabaseLock(directory)

    def list_dir(self, directory: str) -> List[str]:
        return os.listdir(directory)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def open_append(self, path: str) -> OsFile:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _BINARY, self.mode)
        return OsFile(fd)

    def open_read(self, path: str) -> OsReader:
        return OsReader(os.open(path, os.O_RDONLY | _BINARY))

    def create_temp(self, directory: str, prefix: str) -> Tuple[str, OsFile]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY
        while True:
            path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(path, flags, self.mode)
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue
            # A file that replaces another: its size must be durable too, so full fsync.
            return path, OsFile(fd, os.fsync)

    def rename(self, src: str, dst: str) -> None:
        deadline = time.monotonic() + REPLACE_RETRY_SECONDS
        while True:
            try:
                os.replace(src, dst)
                return
            except PermissionError:
                if sys.platform != "win32" or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def remove(self, path: str) -> None:
        os.remove(path)

    def truncate(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDWR | _BINARY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, directory: str) -> None:
        if _DIRECTORY is None:
            return
        fd = os.open(directory, os.O_RDONLY | _DIRECTORY)
        try:
            os.fsync(fd)
        except OSError as exc:  # some file systems cannot fsync a directory
            if exc.errno not in _UNSUPPORTED:
                raise
        finally:
            os.close(fd)
