"""Dataset fetch/verify against local mirrors (http:// and file://) built from the real files; no network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import attntrain.data.sources.fetch as fetching
from attntrain.errors import UserError
from tests.conftest import REPO, cli_env, shared_data

# A couple of small real files per dataset keep the mirror cheap (no GB copies).
SUBSET = {"ud_en_ewt": ["en_ewt-ud-dev.conllu", "LICENSE.txt"], "cora": ["planetoid/ind.cora.test.index",
                                                                       "planetoid/ind.cora.y"]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def restricted(names: dict[str, list[str]]) -> dict[str, dict]:
    """The real manifest, cut down to the named files."""
    full = fetching.manifest()
    return {name: {**full[name], "files": [entry for entry in full[name]["files"] if entry["path"] in paths]}
            for name, paths in names.items()}


@pytest.fixture
def small_manifest(monkeypatch) -> dict[str, dict]:
    subset = restricted(SUBSET)
    monkeypatch.setattr(fetching, "manifest", lambda: subset)
    return subset


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A mirror folder laid out like a data root, holding copies of the SUBSET files."""
    folder = tmp_path / "mirror"
    for name, paths in SUBSET.items():
        for path in paths:
            (folder / name / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared_data() / name / path, folder / name / path)
    return folder


class Server:
    """http.server on 127.0.0.1 (ephemeral port) in a thread; remembers the paths requested."""

    def __init__(self, directory: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                server.requests.append(self.path)

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(directory: Path) -> Server:
        servers.append(Server(directory))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def leftovers(folder: Path) -> list[str]:
    """Temp files or folders a fetch might have left behind."""
    return [p.name for p in folder.rglob("*") if p.name.startswith(".fetch-") or p.name.startswith("tmp")]


def test_fetch_from_http_mirror_verifies_and_is_idempotent(small_manifest, mirror, serve, tmp_path):
    server = serve(mirror)
    root = tmp_path / "root"
    folder = fetching.fetch("ud_en_ewt", root=root, mirror=server.url)
    assert folder == root / "ud_en_ewt"
    for entry in small_manifest["ud_en_ewt"]["files"]:
        assert sha256(folder / entry["path"]) == entry["sha256"]
    assert len(server.requests) == 2 and not leftovers(folder)

    fetching.fetch("ud_en_ewt", root=root, mirror=server.url)
    assert len(server.requests) == 2  # matching files are not downloaded again
    assert fetching.verify("ud_en_ewt", root=root) == 2


def test_corrupted_download_raises_and_leaves_no_file(small_manifest, mirror, serve, tmp_path):
    bad = mirror / "cora" / "planetoid" / "ind.cora.y"
    bad.write_bytes(bad.read_bytes() + b"\0")
    root = tmp_path / "root"
    with pytest.raises(UserError, match="sha256 mismatch") as error:
        fetching.fetch("cora", root=root, mirror=serve(mirror).url)
    expected = next(e["sha256"] for e in small_manifest["cora"]["files"] if e["path"] == "planetoid/ind.cora.y")
    message = str(error.value)
    assert "planetoid/ind.cora.y" in message and expected in message and sha256(bad) in message
    assert not (root / "cora" / "planetoid" / "ind.cora.y").exists()
    assert not leftovers(root / "cora")


def test_file_url_mirror(small_manifest, mirror, tmp_path):
    folder = fetching.fetch("cora", root=tmp_path / "root", mirror=mirror.as_uri())
    assert fetching.verify("cora", root=tmp_path / "root") == 2
    assert sha256(folder / "planetoid" / "ind.cora.y") == sha256(shared_data() / "cora" / "planetoid" / "ind.cora.y")


def test_public_layout_with_renames_and_derived_file(monkeypatch, serve, tmp_path):
    """Whole cora the way the public source serves it (upstream names, npz built locally)."""
    upstream = tmp_path / "planetoid" / "data"
    upstream.mkdir(parents=True)
    for path in (shared_data() / "cora" / "planetoid").iterdir():
        shutil.copyfile(path, upstream / path.name)
    server = serve(tmp_path / "planetoid")
    cora = {**fetching.manifest()["cora"], "base_url": f"{server.url}/data/"}
    monkeypatch.setattr(fetching, "manifest", lambda: {"cora": cora})
    folder = fetching.fetch("cora", root=tmp_path / "root")
    assert sha256(folder / "cora_planetoid.npz") == sha256(shared_data() / "cora" / "cora_planetoid.npz")
    assert fetching.verify("cora", root=tmp_path / "root") == 9


def test_gzip_transform_checks_upstream_content(monkeypatch, serve, tmp_path):
    """multi30k tok/: upstream is plain text; we gzip it and must get the documented file."""
    import gzip

    path = "tok/val.lc.norm.tok.en.gz"
    upstream = tmp_path / "upstream" / "tok"
    upstream.mkdir(parents=True)
    text = gzip.decompress((shared_data() / "multi30k" / path).read_bytes())
    (upstream / "val.lc.norm.tok.en").write_bytes(text)
    server = serve(tmp_path / "upstream")
    dataset = restricted({"multi30k": [path]})["multi30k"]
    monkeypatch.setattr(fetching, "manifest", lambda: {"multi30k": {**dataset, "base_url": f"{server.url}/"}})
    folder = fetching.fetch("multi30k", root=tmp_path / "root")
    assert fetching.matches(folder / path, dataset["files"][0])

    (folder / path).unlink()
    (upstream / "val.lc.norm.tok.en").write_bytes(text.replace(b"a", b"b", 1))
    with pytest.raises(UserError, match="sha256 mismatch of the upstream file"):
        fetching.fetch("multi30k", root=tmp_path / "root")
    assert not (folder / path).exists()


def test_manual_file_is_reported_after_the_rest(monkeypatch, mirror, serve, tmp_path):
    dataset = restricted({"cora": SUBSET["cora"]})["cora"]
    dataset["files"].append({"path": "extra.bin", "sha256": "0" * 64, "size": 1, "manual": "ask the authors"})
    dataset["base_url"] = f"{serve(mirror).url}/cora/planetoid/"  # upstream names: ind.cora.*
    monkeypatch.setattr(fetching, "manifest", lambda: {"cora": dataset})
    with pytest.raises(UserError, match=r"cora: 1 file\(s\) must be obtained by hand: extra.bin: ask the authors"):
        fetching.fetch("cora", root=tmp_path / "root")
    assert (tmp_path / "root" / "cora" / "planetoid" / "ind.cora.y").is_file()


def test_complete_dataset_is_left_alone():
    """Nothing to download: no request, no write (the shared root is read-only), even with a dead mirror."""
    assert fetching.fetch("cora", root=shared_data(), mirror="http://127.0.0.1:9") == shared_data() / "cora"


def test_network_error_names_the_url(small_manifest, tmp_path):
    with pytest.raises(UserError, match=r"download failed: http://127.0.0.1:9/ud_en_ewt/"):
        fetching.fetch("ud_en_ewt", root=tmp_path, mirror="http://127.0.0.1:9")


def test_root_falls_back_to_environment_then_fails(monkeypatch, small_manifest, mirror, tmp_path):
    def no_root():
        raise UserError("data root not found")

    monkeypatch.setattr(fetching, "data_root", no_root)
    monkeypatch.setenv("ATTNTRAIN_DATA", str(tmp_path / "new_root"))
    assert fetching.fetch("cora", mirror=mirror.as_uri()) == tmp_path / "new_root" / "cora"
    monkeypatch.delenv("ATTNTRAIN_DATA")
    with pytest.raises(UserError, match="pass --root DIR or set \\$ATTNTRAIN_DATA"):
        fetching.fetch("cora", mirror=mirror.as_uri())


@pytest.mark.parametrize("name, count", [("ud_en_ewt", 4), ("cora", 9), ("mnist", 4), ("multi30k", 18)])
def test_verify_real_datasets(name, count):
    assert fetching.verify(name, root=shared_data()) == count


def test_verify_names_missing_and_tampered_files(tmp_path):
    shutil.copytree(shared_data() / "cora", tmp_path / "cora")
    (tmp_path / "cora" / "planetoid" / "ind.cora.x").unlink()
    with open(tmp_path / "cora" / "cora_planetoid.npz", "ab") as f:
        f.write(b"!")
    with pytest.raises(UserError) as error:
        fetching.verify("cora", root=tmp_path)
    message = str(error.value)
    assert "1 missing (planetoid/ind.cora.x)" in message and "1 with wrong sha256 (cora_planetoid.npz)" in message


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(UserError, match=r"unknown choice 'coraa' \(did you mean 'cora'\?\); valid: cora, fsdd, imdb"):
        fetching.fetch("coraa", root=tmp_path)


def test_manifest_is_complete_and_consistent():
    """Every file has a hash, a size and a way to obtain it; the real data root matches the file list."""
    for name, dataset in fetching.manifest().items():
        for entry in dataset["files"]:
            assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) and entry["size"] > 0, entry
            assert entry.get("url") or dataset.get("base_url") or entry.get("derived") or entry.get("manual"), entry
            if "transform" in entry:
                assert entry["transform"]["name"] in fetching.TRANSFORMS
        folder = shared_data() / name
        on_disk = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
        assert on_disk - {"README.md"} == {entry["path"] for entry in dataset["files"]}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], capture_output=True, text=True,
                          env=cli_env(), cwd=REPO, timeout=120)


def test_cli_verify():
    done = run_cli("data", "verify", "cora", "--root", str(shared_data()))
    assert done.returncode == 0, done.stderr
    assert "cora: 9 files ok" in done.stdout


def test_cli_unknown_dataset_is_a_one_line_error():
    done = run_cli("data", "verify", "nosuchdata", "--root", str(shared_data()))
    assert done.returncode == 2
    assert done.stderr.startswith("error: dataset: unknown choice 'nosuchdata'") and done.stderr.count("\n") == 1


def test_data_cache_reports_and_clears_old_files(tmp_path, monkeypatch):
    import os
    import time

    from typer.testing import CliRunner

    from attntrain.cli import app

    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNTRAIN_CACHE", str(cache))
    old, new = cache / "encoded" / "text-old.arrow", cache / "rows" / "parallel-new.arrow"
    for path, size in ((old, 3000), (new, 5000)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * size)
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    runner = CliRunner()
    shown = runner.invoke(app, ["data", "cache"])
    assert shown.exit_code == 0 and "encoded" in shown.output and "rows" in shown.output
    assert shown.output.splitlines()[-1].split()[1] == "2"  # total files
    pruned = runner.invoke(app, ["data", "cache", "--older-than", "7", "--clear"])
    assert pruned.exit_code == 0 and not old.exists() and new.exists()
    runner.invoke(app, ["data", "cache", "--clear"])
    assert not new.exists()
