"""Download the datasets from their public sources (sources.json) and check every file's sha256.

A manifest file entry has `path`, `sha256`, `size`, and says where the bytes come from: `url` (or
the dataset's `base_url` + `source`, default `path`), optionally a named `transform` (e.g. gzip the
upstream text), `derived: true` (built from other files of the dataset, no download) or `manual`
(instructions; fetch cannot obtain it). `content_sha256` is the hash of the uncompressed content
of a .gz we compress ourselves: a different compressor gives other .gz bytes, same content.
A `mirror` holds finished files laid out like a data root, so from a mirror nothing is transformed.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from attntrain.data.sources.root import ENV_DATA, data_root
from attntrain.errors import UserError
from attntrain.registry import lookup

MANIFEST = Path(__file__).with_name("sources.json")
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict]:
    """Dataset name -> {source, note, base_url, files} from sources.json."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["datasets"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, entry: dict) -> bool:
    """True when the file has the manifest's bytes (or, for our own .gz, the manifest's content)."""
    if not path.is_file():
        return False
    if file_sha256(path) == entry["sha256"]:
        return True
    if "content_sha256" not in entry:
        return False
    try:
        return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == entry["content_sha256"]
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


def resolve_root(root: Path | None, create: bool) -> Path:
    """An explicit root, else the resolved data root, else $ATTNTRAIN_DATA (fetch may create it)."""
    if root is not None:
        return Path(root).expanduser()
    try:
        return data_root()
    except UserError:
        if create and os.environ.get(ENV_DATA):
            return Path(os.environ[ENV_DATA]).expanduser()
        raise UserError(f"no data root: pass --root DIR or set ${ENV_DATA} to the folder to fill") from None


def source_url(name: str, entry: dict, mirror: str | None) -> str:
    """Where the file's bytes come from: the mirror's copy, else the public URL, else how it is built."""
    if mirror:
        return f"{mirror.rstrip('/')}/{name}/{urllib.parse.quote(entry['path'])}"
    if entry.get("derived"):
        return f"local transform {entry['transform']['name']}"
    return entry.get("url") or manifest()[name]["base_url"] + entry.get("source", entry["path"])


def download(url: str, target: Path) -> None:
    """Stream `url` into `target` with a progress bar; network trouble becomes a UserError."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                      leave=False, disable=None) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)  # HTTP: keep the code
        raise UserError(f"download failed: {url}: {reason}") from None


def gnu_gzip(data: bytes) -> bytes:
    """`gzip -9n` as the curators ran it (byte-exact); Python's zlib otherwise (same content)."""
    if shutil.which("gzip"):
        return subprocess.run(["gzip", "-9n"], input=data, capture_output=True, check=True).stdout
    return gzip.compress(data, compresslevel=9, mtime=0)


def python_gzip(data: bytes) -> bytes:
    """Python's gzip at level 9, mtime 0, no name: how imdb was written."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def check_content(entry: dict, data: bytes, origin: str) -> bytes:
    """Refuse upstream content that is not what the manifest documents, before compressing it."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["content_sha256"]:
        raise UserError(f"{entry['path']}: sha256 mismatch of {origin}: "
                        f"expected {entry['content_sha256']}, got {actual}")
    return data


def gzip_text(entry: dict, source: Path, folder: Path) -> bytes:
    return gnu_gzip(check_content(entry, source.read_bytes(), "the upstream file"))


def tar_member_gzip(entry: dict, source: Path, folder: Path) -> bytes:
    member = entry["transform"]["member"]
    with tarfile.open(source) as archive:
        data = archive.extractfile(member).read()  # KeyError when missing: reported by produce()
    return gnu_gzip(check_content(entry, data, member))


REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(neg|pos)/(\d+)_(\d+)\.txt$")


def imdb_jsonl(entry: dict, source: Path, folder: Path) -> bytes:
    """Pack the labeled reviews of one split, as the imdb README describes (neg then pos, by id)."""
    split, rows = entry["transform"]["split"], []
    with tarfile.open(source) as archive:
        for member in archive:
            found = REVIEW.search(member.name)
            if member.isfile() and found and found.group(1) == split:
                _, polarity, number, rating = found.groups()
                text = archive.extractfile(member).read().decode("utf-8")
                rows.append(((polarity == "pos", int(number)), {
                    "id": f"{split}/{polarity}/{number}_{rating}", "rating": int(rating),
                    "label": int(polarity == "pos"), "text": text,
                    "path": f"aclImdb/{split}/{polarity}/{number}_{rating}.txt"}))
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for _, row in sorted(rows, key=lambda pair: pair[0])]
    return python_gzip(check_content(entry, "".join(lines).encode("utf-8"), "the packed reviews"))


def speakers_tsv(entry: dict, source: Path, folder: Path) -> bytes:
    """fsdd's metadata.py dict as TSV; literal_eval, so the downloaded code is never run."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    value = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "metadata")
    lines = ["speaker\tgender\taccent\tlanguage"]
    lines += [f"{speaker}\t{meta['gender']}\t{meta['accent']}\t{meta['language']}"
              for speaker, meta in ast.literal_eval(value).items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def sha256sums(entry: dict, source: Path | None, folder: Path) -> bytes:
    """`sha256sum` output for the already verified files, in C-locale order."""
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.glob(entry["transform"]["pattern"]))
    return "".join(f"{file_sha256(folder / path)}  {path}\n" for path in paths).encode()


def cora_npz(entry: dict, source: Path | None, folder: Path) -> bytes:
    """cora_planetoid.npz from the Planetoid files, by the GCN procedure in the cora README."""
    from attntrain.data.sources.planetoid import read_planetoid

    arrays = read_planetoid(folder / "planetoid", "cora")
    arrays["features"] = arrays["features"].astype(np.uint8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            # fixed date and mode so the bytes do not depend on when/where it is built
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)
    return buffer.getvalue()


TRANSFORMS = {"gzip": gzip_text, "tar_member_gzip": tar_member_gzip, "imdb_jsonl": imdb_jsonl,
              "speakers_tsv": speakers_tsv, "sha256sums": sha256sums, "cora_npz": cora_npz}


def new_temp(work: Path) -> Path:
    handle, path = tempfile.mkstemp(dir=work)
    os.close(handle)
    return Path(path)


def produce(name: str, entry: dict, folder: Path, work: Path, mirror: str | None, sources: dict) -> Path:
    """Bring one file into the work folder (download, then transform); return the temp file."""
    temp = new_temp(work)
    if mirror or "transform" not in entry:
        download(source_url(name, entry, mirror), temp)
        return temp
    source = None
    if not entry.get("derived"):
        url = source_url(name, entry, None)
        if url not in sources:  # an archive serves several files: download it once
            sources[url] = new_temp(work)
            download(url, sources[url])
            expected, actual = entry.get("source_sha256"), file_sha256(sources[url])
            if expected and actual != expected:
                raise UserError(f"{name}/{entry['path']}: sha256 mismatch of {url}: expected {expected}, got {actual}")
        source = sources[url]
    transform = lookup(TRANSFORMS, entry["transform"]["name"], f"{name}/{entry['path']}: transform")
    try:
        temp.write_bytes(transform(entry, source, folder))
    except (OSError, ValueError, KeyError, EOFError, tarfile.TarError, pickle.UnpicklingError) as e:
        # an upstream file of an unexpected shape: say which file, not a traceback
        origin = source_url(name, entry, None)
        raise UserError(f"{name}/{entry['path']}: cannot build it from {origin}: {e!r}") from None
    return temp


def fetch(name: str, root: Path | None = None, mirror: str | None = None) -> Path:
    """Download every file of dataset `name` into <root>/<name>/, verifying sha256; return the folder.

    Files that already match are kept. A file is renamed into place only once its hash matches, so
    a failed or interrupted fetch leaves no partial file. Files marked `manual` are reported at the
    end, after everything else has been fetched.
    """
    files = lookup(manifest(), name, "dataset")["files"]
    folder = resolve_root(root, create=True) / name
    ordered = sorted(files, key=lambda entry: bool(entry.get("derived")))  # derived files need the rest
    todo = [entry for entry in ordered if not matches(folder / entry["path"], entry)]
    if not todo:  # complete already: touch nothing (the root may be read-only)
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=folder, prefix=".fetch-"))  # same file system: atomic rename
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e}") from None
    manual, sources = [], {}
    try:
        for entry in tqdm(todo, desc=name, unit="file", disable=None):
            target = folder / entry["path"]
            if entry.get("manual") and not mirror:
                manual.append(f"{entry['path']}: {entry['manual']}")
                continue
            temp = produce(name, entry, folder, work, mirror, sources)
            if not matches(temp, entry):
                raise UserError(f"{name}/{entry['path']}: sha256 mismatch (from {source_url(name, entry, mirror)}): "
                                f"expected {entry['sha256']}, got {file_sha256(temp)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if manual:
        raise UserError(f"{name}: {len(manual)} file(s) must be obtained by hand: " + "; ".join(manual))
    return folder


def verify(name: str, root: Path | None = None) -> int:
    """Check that every manifest file of `name` exists with the right sha256; return the count."""
    files = lookup(manifest(), name, "dataset")["files"]
    folder = resolve_root(root, create=False) / name
    missing = [entry["path"] for entry in files if not (folder / entry["path"]).is_file()]
    wrong = [entry["path"] for entry in files
             if (folder / entry["path"]).is_file() and not matches(folder / entry["path"], entry)]
    if missing or wrong:
        def listing(paths: list[str]) -> str:
            return ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")

        problems = [f"{len(missing)} missing ({listing(missing)})"] if missing else []
        problems += [f"{len(wrong)} with wrong sha256 ({listing(wrong)})"] if wrong else []
        raise UserError(f"{name} at {folder}: " + "; ".join(problems) + f"; fix with `attntrain data fetch {name}`")
    return len(files)
