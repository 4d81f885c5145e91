"""Which files a `data.source` names: the base folder, globs, split names, text lines (plain or gzip'd);
the readers (attntrain/data/sources/readers.py) turn them into rows."""

from __future__ import annotations

import glob as globlib
import gzip
from pathlib import Path
from typing import Iterator

from attntrain.data.sources.root import dataset_dir
from attntrain.errors import UserError

Rows = list[dict]
RowStream = Iterator[dict]  # a reader's rows one at a time (read_source collects them, source_rows streams them)
WHERE = "_where"  # a row's origin (file:line) for error messages; readers that know it set it
SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
MEDIA = {"audiofolder": (".wav", ".flac", ".ogg", ".aiff", ".aif"),
         "imagefolder": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")}


def base_folder(data_cfg) -> Path:
    """Where relative file names point: the dataset folder under the data root, or the current directory."""
    if data_cfg.dataset:
        return dataset_dir(data_cfg.root, data_cfg.dataset)
    return Path.cwd()


def expand(base: Path, names: str | list[str], *, what: str) -> list[Path]:
    """File names or globs (relative to base) -> existing paths, in a stable order."""
    found: list[Path] = []
    for name in [names] if isinstance(names, str) else names:
        pattern = str(Path(name).expanduser() if Path(name).expanduser().is_absolute() else base / name)
        matches = sorted(Path(p) for p in globlib.glob(pattern)) or sorted(Path(p) for p in globlib.glob(pattern + ".*"))
        if not matches:
            raise UserError(f"{what}: no file matches {pattern}")
        found.extend(matches)
    return found


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, gunzipped when it ends in .gz; errors name the file (and line)."""
    return list(iter_text_lines(path))


def iter_text_lines(path: Path) -> Iterator[str]:
    """The lines of `read_text_lines` one at a time, for files of any size; a bad byte names file:line:column."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{number}:{e.start + 1}: not UTF-8 text ({e.reason})") from None
                yield line.removesuffix("\n").rstrip("\r")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def file_groups(source, base: Path) -> dict[str, list[Path]]:
    """split -> files from `files:`, or {"all": files} from `path:` (split later)."""
    if source.files:
        groups = {}
        for split, names in source.files.items():
            if split not in SPLIT_ALIASES:
                raise UserError(f"data.source.files: unknown split '{split}'; use train, dev (or validation), test")
            groups[SPLIT_ALIASES[split]] = expand(base, names, what=f"data.source.files.{split}")
        if "train" not in groups:
            raise UserError("data.source.files: needs a 'train' entry")
        return groups
    if source.path:
        found = expand(base, source.path, what="data.source.path")
        if source.format in MEDIA and len(found) == 1 and found[0].is_dir():
            # the audiofolder / imagefolder convention: split sub-folders (train/, test/, ...) when present
            splits = {SPLIT_ALIASES[p.name]: [p] for p in found[0].iterdir() if p.is_dir() and p.name in SPLIT_ALIASES}
            if "train" in splits:
                return splits
        return {"all": found}
    raise UserError(f"data.source: format '{source.format}' needs `files:` (one per split) or `path:`")
