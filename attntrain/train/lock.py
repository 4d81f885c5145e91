"""One training process per run directory: an advisory lock file, `runs/<name>/.lock`.

The lock is `flock` on the file, so the kernel releases it when the holder exits in any way (also
`kill -9`); the file records the holder's PID, host and command for the message a second process
prints. Where `flock` is unavailable (no fcntl, or a file system that refuses it) the PID alone
decides: a lock whose process no longer runs on this host is stale and taken over.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path

from attntrain.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`with RunLock(folder):` holds the run directory for this process; a second holder is refused."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            fields = dict(line.split("=", 1) for line in self.path.read_text(errors="replace").splitlines()
                          if "=" in line)
        except OSError:
            return {}
        return fields

    def _refuse(self, holder: dict) -> UserError:
        who = f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if holder.get("started"):
            who += f", since {holder['started']}"
        if holder.get("command"):
            who += f": {holder['command']}"
        return UserError(f"{self.folder} is in use by another attntrain process ({who}); wait for it to end, "
                         "stop it, or pick another run name with --set name=...")

    def acquire(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.folder)) from e
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not self._lock(fd):
                holder = self._holder()
                os.close(fd)
                raise self._refuse(holder)
            # The previous holder may have unlinked the file between our open and lock: retry then.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = (f"pid={os.getpid()}\nhost={socket.gethostname()}\n"
                  f"started={time.strftime('%Y-%m-%d %H:%M:%S')}\ncommand={' '.join(sys.argv)}\n")
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8", "replace"), 0)
        self._fd = fd
        return self

    def _lock(self, fd: int) -> bool:
        """True when this process now holds the lock."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
        holder = self._holder()  # no flock here: decide by the recorded PID
        pid = int(holder["pid"]) if holder.get("pid", "").isdigit() else None
        same_host = holder.get("host") == socket.gethostname()
        return pid is None or pid == os.getpid() or (same_host and not pid_alive(pid))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # unlink while still holding it: a waiter re-checks the inode (see acquire)
        except OSError:
            pass
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
