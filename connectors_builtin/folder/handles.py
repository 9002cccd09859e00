"""Reading a folder tree through open handles, never by path.

Anyone who can write into an inbox can change it *while* the source walks
it: swap a file for a symbolic link to the daemon's credentials, a sub-folder
for a link to ``/``, or a file for a FIFO that blocks every read. A walk that
lists a folder and later opens ``folder/name`` by path trusts a file type
that may no longer be true. So the walk here never resolves a path twice:

- each folder is opened ``O_DIRECTORY|O_NOFOLLOW`` *relative to its parent's
  handle* (``dir_fd=``) and listed through that handle;
- each file is opened ``O_NOFOLLOW|O_NONBLOCK`` relative to its folder's
  handle; the open handle is ``fstat``-ed and must be a regular file
  (``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting
  for a writer); its size, mtime, content and hash all come from that one
  handle;
- a symbolic link that the source follows (one to a file inside the root) is
  resolved once with ``realpath``, and the result is opened component by
  component from the *root's* handle, again with ``O_NOFOLLOW``: whatever
  the link says, the file opened is one reachable inside the root without
  following any link.

Only the configured root itself is opened by path (following links: the
administrator chose it), and its device and inode are checked against the
resolved path the link checks compare with.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

__all__ = [
    "DIR_FLAGS",
    "FILE_FLAGS",
    "NotRegularFile",
    "Root",
    "kind_of",
    "open_dir_at",
    "open_file_at",
    "open_root",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
"""Opening a sub-folder: refuse a symbolic link swapped in for it."""
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
"""Opening a file: refuse a symbolic link; never block on a FIFO."""

# What open(O_NOFOLLOW) says when the last component is a symbolic link
# (Linux: ELOOP; FreeBSD: EMLINK; O_DIRECTORY on a link: ENOTDIR somewhere).
SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


class NotRegularFile(OSError):
    """The handle opened is not a regular file (a FIFO, socket, device or folder)."""

    def __init__(self, mode: int) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind_of(mode)})")
        self.mode = mode


def kind_of(mode: int) -> str:
    """A human word for a file type."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


@dataclass(frozen=True)
class Root:
    """The walked folder: its handle and the canonical path links are checked against."""

    fd: int
    real: str
    """``realpath`` of the root; its device and inode are those of ``fd``."""

    def close(self) -> None:
        os.close(self.fd)

    def inside(self, path: str) -> str | None:
        """``path`` (canonical) relative to the root, or None when it lies outside."""
        if path == self.real:
            return ""
        prefix = self.real.rstrip(os.sep) + os.sep
        return path[len(prefix) :] if path.startswith(prefix) else None

    def open_beneath(self, rel: str) -> tuple[int, os.stat_result]:
        """Open ``rel`` (a canonical relative path) from the root's handle, no link followed.

        Returns the handle and its ``fstat``; raises :class:`OSError` (with an
        errno in :data:`SYMLINK_ERRNOS` when a component is a link now) or
        :class:`NotRegularFile`.
        """
        parts = [p for p in rel.split(os.sep) if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise OSError(errno.EINVAL, "not a file below the folder")
        fd = self.fd
        opened: list[int] = []
        try:
            for part in parts[:-1]:
                fd = os.open(part, DIR_FLAGS, dir_fd=fd)
                opened.append(fd)
            return open_file_at(fd, parts[-1])
        finally:
            for handle in opened:
                os.close(handle)


def open_root(path: str) -> Root:
    """Open the configured folder (following links: the administrator chose it)."""
    real = os.path.realpath(path)
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        st = os.fstat(fd)
        again = os.stat(real)
        if (st.st_dev, st.st_ino) != (again.st_dev, again.st_ino):
            # The folder was replaced between resolving and opening it: the
            # canonical path no longer names what we hold.
            raise OSError(errno.EAGAIN, "the folder was replaced while being opened", path)
    except BaseException:
        os.close(fd)
        raise
    return Root(fd, real)


def open_dir_at(dir_fd: int, name: str) -> int:
    """Open the sub-folder ``name`` of ``dir_fd``; a symbolic link is refused."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def open_file_at(dir_fd: int, name: str) -> tuple[int, os.stat_result]:
    """Open ``name`` in ``dir_fd`` for reading: a regular file, no link, no blocking.

    Returns the handle and its ``fstat`` (the one the caller must trust).
    """
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(st.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, st
