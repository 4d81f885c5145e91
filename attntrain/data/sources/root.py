"""Where datasets live: config `data.root`, else $ATTNTRAIN_DATA, else ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

from attntrain.errors import UserError

ENV_DATA = "ATTNTRAIN_DATA"
ENV_CACHE = "ATTNTRAIN_CACHE"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_root(configured: str | None = None) -> Path:
    """The data root folder; a missing one is a UserError that says how to obtain the data."""
    if configured:
        candidates = [(Path(configured).expanduser(), "data.root")]
    elif os.environ.get(ENV_DATA):
        candidates = [(Path(os.environ[ENV_DATA]).expanduser(), f"${ENV_DATA}")]
    else:
        candidates = [
            (Path.cwd() / ".." / "shared" / "data", "default"),
            (PROJECT_ROOT / ".." / "shared" / "data", "default"),
        ]
    for path, _ in candidates:
        if path.is_dir():
            return path.resolve()
    tried = ", ".join(f"{p} ({why})" for p, why in candidates)
    raise UserError(
        f"data root not found (tried {tried}); set data.root or ${ENV_DATA}, "
        "or download the datasets with `attntrain data fetch NAME --root DIR`"
    )


def dataset_dir(configured_root: str | None, name: str) -> Path:
    path = data_root(configured_root) / name
    if not path.is_dir():
        raise UserError(f"dataset '{name}' not found at {path}; obtain it with `attntrain data fetch {name}`")
    return path


def cache_root() -> Path:
    """Where the data cache is ($ATTNTRAIN_CACHE, default ~/.cache/attntrain); it may not exist yet."""
    return Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "attntrain")).expanduser()


def cache_dir() -> Path:
    """The data cache folder (parsed tables, Arrow rows, encoded splits, vocabularies), made when missing."""
    path = cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        where = f"${ENV_CACHE}={os.environ[ENV_CACHE]}" if os.environ.get(ENV_CACHE) else str(path)
        raise UserError(f"{where}: the data cache must be a folder, and this is a file (or lies under one); "
                        f"point ${ENV_CACHE} at a folder") from None
    return path


def cache_usage(older_than_days: float | None = None, *, remove: bool = False) -> list[tuple[str, int, int]]:
    """(kind, files, bytes) per top-level folder of the cache (tables, rows, encoded, ...), counting files
    last modified more than `older_than_days` ago when given; `remove` deletes the files counted.

    Every cached file is keyed by what it was computed from, so a deleted one is computed again when next
    needed; deleting while a run reads it can break that run.
    """
    import shutil
    import time

    root = cache_root()
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    usage = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = [f for f in kind.rglob("*") if f.is_file() and (cutoff is None or f.stat().st_mtime < cutoff)]
        usage.append((kind.name, len(files), sum(f.stat().st_size for f in files)))
        if remove and cutoff is None:
            shutil.rmtree(kind, ignore_errors=True)
        elif remove:
            for f in files:
                f.unlink(missing_ok=True)
    return usage
