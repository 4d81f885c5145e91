"""Write the shipped datasets in the layouts users bring, for the README's "Your own data" walk-through.

    python scripts/own_data_examples.py --out own_data            # every layout (~1 min)
    python scripts/own_data_examples.py --out own_data --only sst2_csv multi30k_text
    python scripts/own_data_examples.py --only sst2_csv --limit 40   # a tiny copy (the docs test)

Layouts (each a folder under --out; the configs in configs/own/ read them):
  sst2_csv/{train,dev,test}.csv       text,label (train = the Kim split + the GLUE phrases, as the sst2 preset)
  sst2_text/{pos,neg}.txt              one sentence per line, label = file stem, no split (a seeded ratio split)
  sst2_3k/{train,dev,test}/{pos,neg}.txt   3,000 of the Kim training sentences (seeded sample), the real dev
                                       and test: a small set in the two-file layout (README: Which settings)
  sst2_hf/                             a Hugging Face DatasetDict written with save_to_disk
  multi30k_text/{train,val,test}.{de,en}   plain (not gzip'd) line-aligned parallel text
  fsdd_audio/{train,test}/<digit>/*.wav    an audiofolder (links to the FSDD wavs; index 0-4 = test)
  mnist_png/{train,test}/<digit>/*.png     an imagefolder of grayscale PNGs (--per-class images per digit)
  mnist_png_rgb/...                        the same digits as RGB PNGs (a colour tint per image)
  ewt_jsonl/{train,dev,test}.jsonl         {"tokens": [...], "upos": [...]} per sentence
  imdb_jsonl/{train,test}.jsonl            {"text": "<the review as written>", "label": "pos" | "neg"}, no dev
  cora_tables/{nodes,edges}.csv            Cora as tables: id,features,label,split (features: 1433 numbers
                                           separated by spaces; split: the Planetoid split, empty for the
                                           other nodes) and source,target (both directions)
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attntrain.data.sources.root import data_root  # noqa: E402


def _shipped(task: str, dataset: str, **data):
    from attntrain.config import build_config
    from attntrain.data import build_task

    return build_task(build_config({"data": {"task": task, "dataset": dataset, **data},
                                    "model": {"head": {"kind": "sequence"}}}, "preset"))


def _sentences(task, split: str, limit: int | None) -> list[tuple[str, str]]:
    """(space-separated words, label name) of the shipped SST-2 preset's rows of one split."""
    return [(" ".join(task.input_kind.tokens(r["sentence"])), task.target.value(r, split))
            for r in task.read_split(split)[:limit]]


def sst2_csv(out: Path, src: Path, *, limit: int | None = None) -> None:
    task = _shipped("sst2", "sst2", phrases=True)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(_sentences(task, split, limit))


def sst2_text(out: Path, src: Path, *, limit: int | None = None) -> None:
    task = _shipped("sst2", "sst2")
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for split in ("train", "dev", "test") for r in _sentences(task, split, None)][:limit]
    for label, name in (("positive", "pos"), ("negative", "neg")):
        (out / f"{name}.txt").write_text("".join(words + "\n" for words, said in rows if said == label),
                                         encoding="utf-8")


def sst2_3k(out: Path, src: Path, *, limit: int | None = None, size: int = 3000, seed: int = 0) -> None:
    """A seeded sample of `size` training sentences (limit: of every split, for tests), dev and test whole."""
    import random

    task = _shipped("sst2", "sst2")
    for split in ("train", "dev", "test"):
        rows = _sentences(task, split, None)
        if split == "train":
            rows = random.Random(seed).sample(rows, min(size, len(rows)))
        rows = rows[:limit]
        (out / split).mkdir(parents=True, exist_ok=True)
        for label, name in (("positive", "pos"), ("negative", "neg")):
            (out / split / f"{name}.txt").write_text("".join(words + "\n" for words, said in rows if said == label),
                                                     encoding="utf-8")


def sst2_hf(out: Path, src: Path, *, limit: int | None = None) -> None:
    import datasets

    task = _shipped("sst2", "sst2")
    parts = {name: datasets.Dataset.from_list([{"sentence": words, "label": label}
                                                for words, label in _sentences(task, split, limit)])
             for name, split in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    if out.exists():
        shutil.rmtree(out)
    datasets.DatasetDict(parts).save_to_disk(str(out))


def multi30k_text(out: Path, src: Path, *, limit: int | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stem, name in (("train", "train"), ("val", "val"), ("test_2016_flickr", "test")):
        for lang in ("de", "en"):
            with gzip.open(src / "multi30k" / "raw" / f"{stem}.{lang}.gz", "rt", encoding="utf-8", newline="\n") as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            (out / f"{name}.{lang}").write_text("".join(line + "\n" for line in lines[:limit]), encoding="utf-8")


def fsdd_audio(out: Path, src: Path, *, limit: int | None = None) -> None:
    from attntrain.data.inputs.audio import parse_fsdd_name

    for wav in sorted((src / "fsdd" / "recordings").glob("*.wav")):
        digit, speaker, index = parse_fsdd_name(wav)
        if limit is not None and index >= limit:
            continue
        target = out / ("test" if index < 5 else "train") / str(digit) / wav.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(wav, target)


def _mnist_png(out: Path, src: Path, *, per_class: int, rgb: bool) -> None:
    import numpy as np
    from PIL import Image

    from attntrain.data.inputs.images import read_idx

    for split, name in (("train", "train"), ("test", "t10k")):
        images = read_idx(src / "mnist" / f"{name}-images-idx3-ubyte.gz").numpy()
        labels = read_idx(src / "mnist" / f"{name}-labels-idx1-ubyte.gz").numpy()
        count = per_class if split == "train" else max(per_class // 5, 1)
        seen = {d: 0 for d in range(10)}
        rng = np.random.default_rng(0)
        for i, (image, label) in enumerate(zip(images, labels)):
            if seen[int(label)] >= count:
                continue
            seen[int(label)] += 1
            folder = out / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            if rgb:  # a random colour per image: the digit's shape carries the label, not its colour
                tint = rng.uniform(0.3, 1.0, size=3)
                pixels = (image[..., None] * tint).astype(np.uint8)
                Image.fromarray(pixels, mode="RGB").save(folder / f"{i}.png")
            else:
                Image.fromarray(image, mode="L").save(folder / f"{i}.png")
            if all(v >= count for v in seen.values()):
                break


def mnist_png(out: Path, src: Path, *, limit: int | None = None) -> None:
    _mnist_png(out, src, per_class=limit or 1000, rgb=False)


def mnist_png_rgb(out: Path, src: Path, *, limit: int | None = None) -> None:
    _mnist_png(out, src, per_class=limit or 1000, rgb=True)


def ewt_jsonl(out: Path, src: Path, *, limit: int | None = None) -> None:
    from attntrain.data.sources.conll import read_conllu

    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        sentences = read_conllu(src / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu")[:limit]
        (out / f"{split}.jsonl").write_text(
            "".join(json.dumps({"tokens": s["words"], "upos": s["upos"]}, ensure_ascii=False) + "\n" for s in sentences),
            encoding="utf-8")


def imdb_jsonl(out: Path, src: Path, *, limit: int | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with gzip.open(src / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]  # all negative reviews, then all positive
        if limit is not None:  # both labels: the first limit/2 of each
            rows = [r for label in (0, 1) for r in [r for r in rows if r["label"] == label][:(limit + 1) // 2]]
        (out / f"{split}.jsonl").write_text("".join(json.dumps({"text": r["text"], "label": "pos" if r["label"] else "neg"},
                                                               ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def cora_tables(out: Path, src: Path, *, limit: int | None = None, fmt: str = "csv", names: bool = True) -> None:
    """The Planetoid .npz as a node table and an edge table (the whole graph: `limit` is ignored).

    fmt: csv (features as a string of numbers) or jsonl (features as a list); names: class names as
    labels (false: the npz's class ids 0-6, which keep its label order).
    """
    import numpy as np

    from attntrain.data.tasks.graph import CORA_CLASSES, SPLIT_KEYS

    with np.load(src / "cora" / "cora_planetoid.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    split_of = {int(node): split for split, key in SPLIT_KEYS.items() for node in arrays[key]}
    nodes = [{"id": node, "features": row.tolist(), "label": CORA_CLASSES[label] if names else int(label),
              "split": split_of.get(node, "")}
             for node, (row, label) in enumerate(zip(arrays["features"], arrays["labels"]))]
    edges = [{"source": int(a), "target": int(b)} for a, b in arrays["edge_index"].T]
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        for name, rows in (("nodes", nodes), ("edges", edges)):
            (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return
    for name, rows in (("nodes", nodes), ("edges", edges)):
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**r, "features": " ".join(map(str, r["features"]))} if "features" in r else r
                             for r in rows)


LAYOUTS = {"sst2_csv": sst2_csv, "sst2_text": sst2_text, "sst2_3k": sst2_3k, "sst2_hf": sst2_hf, "multi30k_text": multi30k_text,
           "imdb_jsonl": imdb_jsonl, "fsdd_audio": fsdd_audio, "mnist_png": mnist_png, "mnist_png_rgb": mnist_png_rgb, "ewt_jsonl": ewt_jsonl,
           "cora_tables": cora_tables}


def write(name: str, out: Path, *, limit: int | None = None, src: Path | None = None) -> Path:
    """Write one layout into out/<name>; `limit` keeps only the first rows (tests use slices)."""
    folder = out / name
    LAYOUTS[name](folder, src or data_root(), limit=limit)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("own_data"))
    parser.add_argument("--only", nargs="*", choices=sorted(LAYOUTS), help="layouts to write (default: all)")
    parser.add_argument("--per-class", type=int, default=None, help="mnist_png*: training images per digit (1000)")
    parser.add_argument("--limit", type=int, default=None,
                        help="tiny copies (tests/test_docs.py): the first N rows of each split (sst2_text: of all; "
                             "fsdd_audio: recordings with index < N; cora_tables: always whole)")
    args = parser.parse_args()
    for name in args.only or LAYOUTS:
        limit = args.per_class if name.startswith("mnist") else args.limit
        print(f"{name}: {write(name, args.out, limit=limit)}")


if __name__ == "__main__":
    main()
