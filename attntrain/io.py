"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from attntrain.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing(path):
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


NO_SPACE_BYTES = 1 << 20  # a failed write with less free space than this is reported as a full disk


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Report a failed write as an OSError naming `path` (the file the user knows, not a temp file).

    safetensors and torch.save wrap the OS error in their own exception types; when one of those
    fails on a nearly full file system, it is reported as "No space left on device".
    """
    path = Path(path)
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except Exception as e:
        if type(e).__name__ in ("SafetensorError", "RuntimeError") and _nearly_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise


def _nearly_full(folder: Path) -> bool:
    while not folder.exists() and folder.parent != folder:  # a checkpoint's folder is made by a rename later
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < NO_SPACE_BYTES
    except OSError:
        return False


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def finite_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line and flush it, so metrics survive a kill. NaN/inf are written as null."""
    with writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(finite_json(record), ensure_ascii=False, allow_nan=False) + "\n")
        f.flush()


def decode_text(data: bytes, source: str | Path) -> str:
    """UTF-8 bytes -> str; invalid bytes are a UserError at `source:line:column` (1-based, column in bytes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"{source}:{line}:{column}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                        "save the file as UTF-8") from None


def read_text(path: str | Path) -> str:
    """A UTF-8 text file; undecodable bytes and unreadable files are one UserError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None
    return decode_text(data, path)


def read_jsonl(path: str | Path, *, skip_last_partial: bool = True) -> list[dict]:
    """Records of a JSON-lines file; a bad line is a UserError at `path:line` (a half-written last
    line, left by a kill during an append, is skipped when `skip_last_partial`)."""
    lines = read_text(path).splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if skip_last_partial and number == len(lines):
                break
            raise UserError(f"{path}:{number}: not a JSON record ({e.msg}); delete that line") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def check_writable(folder: str | Path) -> None:
    """Fail now, with the reason, if files cannot be created in `folder` (read-only, full, no permission)."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"{folder}: cannot write here ({e.strerror}); fix the permissions or free space, "
                        "or copy the run directory somewhere writable") from None


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation, with what to do for the usual causes."""
    where = f"{error.filename}: " if error.filename else ""
    text = f"{where}{error.strerror or error}"
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return text + " (no space left: free some space, then `attntrain fit --resume RUN` continues a run)"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return text + " (cannot write there: pick a writable runs_dir, or fix the permissions)"
    return text


def stdin_lines() -> Iterator[str]:
    """Lines of standard input, decoded as UTF-8 one at a time; a bad byte is a UserError at <stdin>:line:column."""
    for number, raw in enumerate(sys.stdin.buffer, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"<stdin>:{number}:{e.start + 1}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
