"""Fault sweep: corrupt copies of real data, configs and run files in a temp folder and run the CLI on each.

    python scripts/fault_sweep.py [--keep] [--only SUBSTRING]

A case is *held* when the command exits with the expected code, prints no traceback and its message
names the culprit (the file, line or key). Prints one line per case and `held N / tried M`; exits 1
when a case is not held. Needs the real data root (../shared/data or $ATTNTRAIN_DATA); trains one
tiny tagging run (seconds) whose copies are then damaged. Cases that need a private mount namespace
(read-only folder, full disk) are skipped where `unshare` is not allowed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attntrain.data.sources.root import data_root  # noqa: E402


@dataclass
class Case:
    group: str  # config | data | run | predict | cli
    name: str
    setup: Callable[["Sweep"], list[str]]  # prepares files, returns the CLI arguments
    needles: list[str] = field(default_factory=list)  # what the message must name ({tmp} = the sweep folder)
    code: int = 2
    prefix: Callable[["Sweep"], list[str] | None] | None = None  # e.g. a mount namespace; None result = skip
    stdin: bytes | None = None
    stdout: list[str] = field(default_factory=list)  # what the output must hold (a prediction's tokens)


class Sweep:
    def __init__(self, tmp: Path):
        self.tmp, self.shared = tmp, data_root()
        self.data = tmp / "data"
        self.count = 0

    # ---- material ------------------------------------------------------------------------------
    def copy(self, src: Path, dst: Path) -> Path:
        """Copy a file or folder (writable, whatever the source's permissions)."""
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            for child in src.iterdir():
                self.copy(child, dst / child.name)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        return dst

    def build_data(self) -> None:
        ewt = self.data / "ud_en_ewt"
        ewt.mkdir(parents=True)
        for split, count in (("train", 200), ("dev", 60), ("test", 60)):
            text = (self.shared / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu").read_text(encoding="utf-8")
            blocks = text.split("\n\n")[:count]
            (ewt / f"en_ewt-ud-{split}.conllu").write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        for wav in (self.shared / "fsdd" / "recordings").glob("*_theo_*.wav"):
            self.copy(wav, self.data / "fsdd" / "recordings" / wav.name)
        self.copy(self.shared / "cora" / "cora_planetoid.npz", self.data / "cora" / "cora_planetoid.npz")
        self.copy(self.shared / "cora" / "planetoid", self.data / "cora" / "planetoid")
        for path in (self.shared / "multi30k" / "raw").glob("*.gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(150)]
            with gzip.open(self.data / "multi30k" / "raw" / path.name if (self.data / "multi30k" / "raw").is_dir()
                           else _mkdir(self.data / "multi30k" / "raw") / path.name, "wt", encoding="utf-8") as f:
                f.writelines(lines)

    def raw(self, name: str = "tiny", **train) -> dict:
        """The tiny tagging config of tests/conftest.py on the EWT slice."""
        return {"name": name, "seed": 3, "runs_dir": str(self.tmp / "runs"),
                "data": {"task": "ud_pos", "root": str(self.data), "dataset": "ud_en_ewt", "max_tokens": 600},
                "model": {"embed": {"word_dim": 32, "char_dim": 16, "char_filters": 32},
                          "encoder": {"num_layers": 2, "width": 64, "num_heads": 4, "ffn_dim": 128}},
                "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 4, "eval_every": 2, "log_every": 1,
                          "progress": False, "threads": 1, **train}}

    def config(self, raw: dict | None = None, *, text: str | bytes | None = None) -> Path:
        """A config file (fresh name each time) from a dict, text or bytes."""
        self.count += 1
        path = self.tmp / "configs" / f"c{self.count:03d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            if raw.get("name") == "tiny":  # every case trains into its own run directory
                raw = {**raw, "name": path.stem}
            text = yaml.safe_dump(raw)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path

    def data_copy(self, dataset: str) -> Path:
        """A fresh data root holding a copy of one dataset of the slice; returns the dataset folder."""
        self.count += 1
        root = self.tmp / f"data{self.count:03d}"
        return self.copy(self.data / dataset, root / dataset)

    def run_copy(self) -> Path:
        self.count += 1
        return self.copy(self.tmp / "runs" / "trained", self.tmp / "runs" / f"copy{self.count:03d}")

    def train(self) -> None:
        done = run_cli(["fit", str(self.config(self.raw("trained")))])
        if done.returncode != 0:
            raise SystemExit(f"training the base run failed:\n{done.stderr}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_cli(args: list[str], *, prefix: list[str] = (), stdin: bytes | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([*prefix, sys.executable, "-m", "attntrain", *args], cwd=REPO, input=stdin,
                         capture_output=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    out.stdout, out.stderr = out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")
    return out


def mount_namespace(script: str) -> list[str] | None:
    if shutil.which("unshare") is None:
        return None
    flags = ["-m"] if os.geteuid() == 0 else ["-rm"]
    if subprocess.run(["unshare", *flags, "true"], capture_output=True).returncode != 0:
        return None
    return ["unshare", *flags, "sh", "-c", script + ' && exec "$@"', "sh"]


# ---- damage helpers -------------------------------------------------------------------------------

def truncate(path: Path, keep: float = 0.5) -> Path:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def edit(path: Path, fn: Callable[[bytes], bytes]) -> Path:
    path.write_bytes(fn(path.read_bytes()))
    return path


def conllu(s: Sweep, damage: Callable[[Path], object], split: str = "train") -> list[str]:
    folder = s.data_copy("ud_en_ewt")
    damage(folder / f"en_ewt-ud-{split}.conllu")
    raw = s.raw()
    raw["data"]["root"] = str(folder.parent)
    return ["fit", str(s.config(raw))]


def task_config(s: Sweep, dataset: str, damage: Callable[[Path], object], data: dict, model: dict | None = None,
                metric: str = "accuracy") -> list[str]:
    folder = s.data_copy(dataset)
    damage(folder)
    raw = s.raw()
    raw["data"] = {"root": str(folder.parent), "dataset": dataset, "max_tokens": 4000, **data}
    raw["model"] = model or raw["model"]
    raw["train"]["metric"] = metric
    return ["fit", str(s.config(raw))]


FSDD = {"task": "fsdd", "label": "digit", "audio": {"features": "logmel"}}
FSDD_MODEL = {"encoder": {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_dim": 32}, "head": {"kind": "sequence"}}
CORA = {"task": "planetoid"}
CORA_MODEL = {"encoder": {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_dim": 32}}
MT = {"task": "translation", "translation": {"vocab_size": 400}}
MT_MODEL = {"encoder": {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_dim": 32},
            "head": {"kind": "seq2seq", "decoder": {"num_layers": 1, "ffn_dim": 32}}}


def fsdd(s, damage, **kw):
    return task_config(s, "fsdd", lambda f: damage(f / "recordings"), FSDD, FSDD_MODEL, **kw)


def mt(s, damage):
    return task_config(s, "multi30k", lambda f: damage(f / "raw"), MT, MT_MODEL, metric="bleu")


def gz_edit(path: Path, fn: Callable[[list[str]], list[str]]) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(fn(lines))


def gz_bytes(path: Path, data: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(data)


def set_key(s: Sweep, dotted: str, value) -> list[str]:
    raw = s.raw()
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return ["validate", str(s.config(raw))]


def run_file(s: Sweep, damage: Callable[[Path], object], command: str = "eval", *extra: str) -> list[str]:
    run = s.run_copy()
    damage(run)
    if command == "eval":
        return ["eval", str(run), *extra]
    if command == "resume":
        return ["fit", "--resume", str(run), "--set", "train.max_steps=6", *extra]
    if command == "predict":
        return ["predict", str(run), "The cat sat .", *extra]
    return ["compare", str(run), "--out", str(s.tmp / "compare"), *extra]


def latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def yaml_edit(path: Path, fn: Callable[[dict], None]) -> None:
    raw = yaml.safe_load(path.read_text())
    fn(raw)
    path.write_text(yaml.safe_dump(raw))


def own(s: Sweep, files: dict[str, str | bytes], source: dict, *, head: str = "sequence", data: dict | None = None,
        command: str = "fit", args: tuple[str, ...] = ()) -> list[str]:
    """A fresh folder holding `files` and a tiny config training on them (the first file is train)."""
    s.count += 1
    folder = s.tmp / f"own{s.count:03d}"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    source = {"files": {"train": next(iter(files))}, **source}  # names relative to the folder
    if source.get("files"):  # dev: the train file unless named (the cases that train need one to evaluate)
        source["files"] = {split: str(folder / name) for split, name in {"dev": source["files"]["train"],
                                                                         **source["files"]}.items()}
    if source.get("path"):
        source["path"] = str(folder / source["path"])
    source = {key: value for key, value in source.items() if value is not None}
    raw = {"name": "own", "seed": 1, "runs_dir": str(folder / "runs"),
           "data": {"source": source, "input": {"field": "tokens" if head == "tagging" else "text"},
                    "target": {"field": "tags" if head == "tagging" else "label"},
                    "split": {"dev": 0.0, "test": 0.0}, **(data or {})},
           "model": {"embed": {"word_dim": 16}, "head": {"kind": head},
                     "encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 16}},
           "train": {"max_steps": 2, "eval_every": 2, "threads": 1, "progress": False, "eval_splits": ["dev"]}}
    return [command, str(s.config(raw)), *args]


def sst2_rows(s: Sweep, count: int = 12, offset: int = 0, names=("negative", "positive")) -> list[list[str]]:
    """[label, sentence] of real SST-2 training lines."""
    lines = (s.shared / "sst2" / "stsa_binary" / "stsa.binary.train").read_text(encoding="utf-8").splitlines()
    return [[names[int(line[0])] if names else line[0], line[2:]] for line in lines[offset:offset + count]]


def csv_of(rows) -> str:
    return "text,label\n" + "".join(f'"{text}",{label}\n' for label, text in rows)


def jsonl_of(rows) -> str:
    return "".join(json.dumps({"text": text, "label": label}) + "\n" for label, text in rows)


def relabel(rows, index: int, label):
    rows = [list(row) for row in rows]
    rows[index][0] = label
    return rows


def wnut(s: Sweep, count: int = 6, line: int | None = None, replacement: str = "") -> str:
    """The first `count` WNUT-17 sentences, physical line `line` replaced."""
    text = (s.shared / "wnut17" / "wnut17train.conll").read_text(encoding="utf-8")
    lines = ("\n\n".join(re.split(r"\n[ \t]*\n", text)[:count]) + "\n\n").split("\n")  # blank lines may hold a tab
    if line is not None:
        lines[line - 1] = replacement
    return "\n".join(lines)


def iob1(s: Sweep) -> str:
    """WNUT-17 sentences with every B- written I- (IOB1 style)."""
    return "\n".join(f"{line.split(chr(9))[0]}\tI-{line[line.index(chr(9)) + 3:]}" if "\tB-" in line else line
                     for line in wnut(s, 30).split("\n"))


def nan_wavs(s: Sweep) -> list[str]:
    import numpy as np
    import soundfile

    wave, rate = soundfile.read(str(s.shared / "fsdd" / "recordings" / "7_theo_3.wav"), dtype="float32")
    args = own(s, {"wavs/0/0.wav": b"", "wavs/1/0.wav": b""}, {"format": "audiofolder", "path": "wavs", "files": None},
               data={"input": {"field": "path", "kind": "audio"}})
    raw = yaml.safe_load(Path(args[1]).read_text())
    raw["train"]["eval_splits"] = ["train"]  # no dev split: the error comes before any evaluation
    Path(args[1]).write_text(yaml.safe_dump(raw))
    folder = Path(raw["data"]["source"]["path"])
    for digit in "01":
        for index in range(2):
            soundfile.write(str(folder / digit / f"{index}.wav"), wave, rate, subtype="FLOAT")
    wave[10:12] = np.nan
    soundfile.write(str(folder / "1" / "bad.wav"), wave, rate, subtype="FLOAT")
    return args


def graph_tables(s: Sweep, *overrides: str) -> list[str]:
    s.count += 1
    folder = _mkdir(s.tmp / f"graph{s.count:03d}")
    (folder / "nodes.csv").write_text("id,features,label\n1,0 1,a\n2,1 0,b\n")
    (folder / "edges.csv").write_text("source,target\n1,2\n")
    raw = s.raw()
    raw["data"] = {"source": {"format": "graph", "files": {"nodes": str(folder / "nodes.csv"),
                                                          "edges": str(folder / "edges.csv")}},
                   "input": {"field": "features", "kind": "graph"}, "target": {"field": "label"}}
    return ["validate", str(s.config(raw)), *[arg for o in overrides for arg in ("--set", o)]]


def cache_is_a_file(s: Sweep) -> list[str] | None:
    (s.tmp / "cache-file").write_text("x")
    return ["env", f"ATTNTRAIN_CACHE={s.tmp / 'cache-file'}"]


def hold_lock(s: Sweep) -> list[str]:
    run = s.run_copy()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]);"
                               "from attntrain.train.lock import RunLock; RunLock(sys.argv[1]).acquire();"
                               "print('held', flush=True); time.sleep(60)", str(run), str(REPO)],
                              stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    s.holders = getattr(s, "holders", []) + [holder]
    return ["fit", "--resume", str(run)]


def overwrite_with_bad_data(s: Sweep) -> list[str]:
    """fit --overwrite of a trained run with a broken train file: refused, and the old run must stay whole."""
    run = s.run_copy()
    folder = s.data_copy("ud_en_ewt")
    (folder / "en_ewt-ud-train.conllu").write_text("1\tonly-one-column\n\n", encoding="utf-8")
    raw = {**s.raw(run.name), "data": {**s.raw()["data"], "root": str(folder.parent)}}
    path = s.tmp / "configs" / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ["fit", str(path), "--overwrite"]


def resume_changed_data(s: Sweep) -> list[str]:
    """--resume after the train file lost half its sentences."""
    run = s.run_copy()
    folder = s.data_copy("ud_en_ewt")
    yaml_edit(run / "config.yaml", lambda c: c["data"].update(root=str(folder.parent)))
    train = folder / "en_ewt-ud-train.conllu"
    blocks = train.read_text(encoding="utf-8").split("\n\n")
    train.write_text("\n\n".join(blocks[: len(blocks) // 2]) + "\n\n", encoding="utf-8")
    return ["fit", "--resume", str(run), "--set", "train.max_steps=6"]


def graph_run(s: Sweep) -> list[str]:
    done = run_cli(["fit", str(REPO / "configs" / "cora_gat.yaml"), "--set", f"runs_dir={s.tmp / 'graph'}",
                    "--set", f"data.root={s.data}", "--set", "train.seeds=1", "--set", "train.max_steps=2",
                    "--set", "train.progress=false", "--set", "train.threads=1"])
    if done.returncode:
        raise SystemExit(f"training the graph run failed:\n{done.stderr}")
    return ["export", str(s.tmp / "graph" / "cora_gat")]


def busy_port(s: Sweep) -> list[str]:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    s.sockets = getattr(s, "sockets", []) + [holder]
    return ["serve", str(s.tmp / "runs" / "trained"), "--port", str(holder.getsockname()[1])]


def quoted_newline_csv(s: Sweep, row_nine: str) -> list[str]:
    """Real SST-2 rows; row 5 holds a quoted value over three lines, so row 9 starts on physical line 12."""
    rows = [f'"{text}",{label}' for label, text in sst2_rows(s, 11)]
    rows[4] = '"a long review\nover three\nlines, with a comma",positive'
    rows[8] = row_nine
    return own(s, {"train.csv": "text,label\n" + "\n".join(rows) + "\n"}, {"format": "csv"})


def same_size_edit(s: Sweep) -> list[str]:
    """A table fitted once (cached), then one label in its middle (~150 KB from either end) blanked with the
    same number of bytes and the modification time put back: the second fit must read the file again."""
    rows = sst2_rows(s, 3000)
    args = own(s, {"train.csv": csv_of(rows)}, {"format": "csv"})
    first = run_cli(args)
    if first.returncode:
        raise SystemExit(f"the first fit failed:\n{first.stderr}")
    path = Path(yaml.safe_load(Path(args[1]).read_text())["data"]["source"]["files"]["train"])
    stat, data = path.stat(), path.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1  # the row at the middle of the file
    end = data.index(b"\n", middle)
    label = data.rindex(b",", middle, end)
    blank = b',"' + b" " * (end - label - 3) + b'"'  # as many bytes as ",positive" / ",negative"
    path.write_bytes(data[:label] + blank + data[end:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    yaml_edit(Path(args[1]), lambda c: c.update(name="again"))
    return args


def planetoid_folder(s: Sweep, damage: Callable[[Path], object]) -> list[str]:
    """format planetoid on a copy of Cora's ind.* files, damaged."""
    folder = s.data_copy("cora") / "planetoid"
    damage(folder)
    raw = s.raw()
    raw["data"] = {"source": {"format": "planetoid", "path": str(folder), "name": "cora"}, "input": {"kind": "graph"}}
    raw["model"]["head"] = {"kind": "tagging"}
    return ["fit", str(s.config(raw))]


class Exploit:
    """A pickle whose loading would run `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def french_run(s: Sweep) -> list[str]:
    """A tiny tagger trained on French token lists (BIO file): predict cuts l'homme as the data does."""
    sentences = [["l'", "homme", "mange", "."], ["j'", "aime", "l'", "eau", "."], ["qu'", "il", "voit", "l'", "enfant", "."]]
    text = "".join("".join(f"{token}\t{'B-x' if token == 'homme' else 'O'}\n" for token in sentence) + "\n"
                   for sentence in sentences * 4)
    args = own(s, {"train.bio": text}, {"format": "conll"}, head="tagging")
    done = run_cli(args)
    if done.returncode:
        raise SystemExit(f"training the French run failed:\n{done.stderr}")
    run = Path(yaml.safe_load(Path(args[1]).read_text())["runs_dir"]) / "own"
    return ["predict", str(run), "--format", "jsonl", "L'homme qu'il voit."]


def big_line(s: Sweep) -> list[str]:
    path = s.tmp / "big.txt"
    path.write_text("The cat sat on the mat . " * 42000 + "\n")  # 1.05 MB, 294,000 words
    return ["predict", str(s.tmp / "runs" / "trained"), "--file", str(path)]


CASES = [
    # ---- config ----
    Case("config", "empty file", lambda s: ["validate", str(s.config(text=""))], ["empty config"]),
    Case("config", "comments only", lambda s: ["fit", str(s.config(text="# todo\n"))], ["empty config"]),
    Case("config", "non-UTF-8 byte", lambda s: ["validate", str(s.config(text=b"seed: 1\nname: caf\xe9\n"))],
         [".yaml:2:10: not UTF-8"]),
    Case("config", "UTF-16 file", lambda s: ["validate", str(s.config(text="seed: 1\n".encode("utf-16")))],
         [".yaml:1:1: not UTF-8"]),
    Case("config", "random bytes", lambda s: ["validate", str(s.config(text=bytes(range(256)) * 4))], ["not UTF-8"]),
    Case("config", "invalid YAML", lambda s: ["validate", str(s.config(text="train:\n  lr: [1,\n"))], ["invalid YAML"]),
    Case("config", "top level is a list", lambda s: ["validate", str(s.config(text="- a\n- b\n"))],
         ["must be a mapping"]),
    Case("config", "section is a string", lambda s: set_key(s, "model", "big"), ["'model' must be a mapping"]),
    Case("config", "unknown top key", lambda s: set_key(s, "trian", {}), ["unknown key 'trian'", "did you mean 'train'"]),
    Case("config", "unknown nested key", lambda s: set_key(s, "model.encoder.widht", 3), ["model.encoder.widht"]),
    Case("config", "wrong type", lambda s: set_key(s, "train.lr", "fast"), ["train.lr"]),
    Case("config", "negative lr", lambda s: set_key(s, "train.lr", -1), ["train.lr"]),
    Case("config", "dropout 1.5", lambda s: set_key(s, "model.encoder.dropout", 1.5), ["model.encoder.dropout"]),
    Case("config", "unknown encoder", lambda s: set_key(s, "model.encoder.kind", "lstm"), ["model.encoder.kind"]),
    Case("config", "unknown task", lambda s: set_key(s, "data.task", "pos"), ["data.task"]),
    Case("config", "heads do not divide width", lambda s: set_key(s, "model.encoder.num_heads", 5),
         ["model.encoder.num_heads"]),
    Case("config", "even cnn kernel", lambda s: set_key(s, "model.encoder.kernel_size", 4),
         ["model.encoder.kernel_size"]),
    Case("config", "missing dataset folder", lambda s: set_key(s, "data.dataset", "ud_en_ewtt"), ["data.dataset"]),
    Case("config", "missing data root", lambda s: set_key(s, "data.root", str(s.tmp / "nowhere")), ["data.root"]),
    Case("config", "metric of another head", lambda s: set_key(s, "train.metric", "bleu"), ["train.metric: 'bleu'"]),
    Case("config", "misspelt metric", lambda s: set_key(s, "train.metric", "acuracy"), ["did you mean 'accuracy'"]),
    Case("config", "label on a single-label task", lambda s: set_key(s, "data.label", "upos"), ["data.label"]),
    Case("config", "fsdd label typo", lambda s: ["validate", str(REPO / "configs" / "fsdd_digit.yaml"),
                                                 "--set", "data.label=digits"], ["data.label: 'digits'"]),
    Case("config", "unknown target language", lambda s: ["validate", str(REPO / "configs" / "multi30k_quick.yaml"),
                                                         "--set", "data.translation.target=english"],
         ["data.translation.target"]),
    Case("config", "source equals target", lambda s: ["validate", str(REPO / "configs" / "multi30k_quick.yaml"),
                                                      "--set", "data.translation.target=de"], ["data.translation"]),
    Case("config", "unknown eval split", lambda s: ["fit", str(s.config(s.raw("splits", eval_splits=["validation"])))],
         ["train.eval_splits: unknown split 'validation'"]),
    Case("config", "--set without =", lambda s: ["validate", str(s.config(s.raw())), "--set", "train.lr"], ["--set"]),
    Case("config", "--set unknown key", lambda s: ["validate", str(s.config(s.raw())), "--set", "train.lrr=1"],
         ["train.lrr"]),
    Case("config", "config file missing", lambda s: ["validate", str(s.tmp / "none.yaml")], ["none.yaml"]),
    Case("config", "config is a folder", lambda s: ["validate", str(s.tmp)], ["config file not found"]),
    # ---- data ----
    Case("data", "conllu non-UTF-8 byte", lambda s: conllu(s, lambda p: edit(p, lambda b: b.replace(b"the", b"th\xe9", 1))),
         ["en_ewt-ud-train.conllu"]),
    Case("data", "conllu truncated mid-line", lambda s: conllu(s, lambda p: truncate(p, 0.5003)),
         ["en_ewt-ud-train.conllu"]),
    Case("data", "conllu line with 5 columns", lambda s: conllu(s, lambda p: edit(
        p, lambda b: b.replace(b"\n1\t", b"\n1\tbroken\tline\tof\tfive\n2\t", 1))), ["en_ewt-ud-train.conllu"]),
    Case("data", "conllu unknown UPOS tag", lambda s: conllu(s, lambda p: edit(p, lambda b: b.replace(b"\tNOUN\t", b"\tNOUNS\t", 1))),
         ["NOUNS"]),
    Case("data", "conllu dev missing", lambda s: conllu(s, lambda p: p.unlink(), "dev"), ["dev"]),
    Case("data", "conllu is binary", lambda s: conllu(s, lambda p: p.write_bytes(os.urandom(4000))),
         ["en_ewt-ud-train.conllu"]),
    Case("data", "wav truncated", lambda s: fsdd(s, lambda f: truncate(f / "3_theo_20.wav")), ["3_theo_20.wav"]),
    Case("data", "wav empty", lambda s: fsdd(s, lambda f: (f / "3_theo_20.wav").write_bytes(b"")), ["3_theo_20.wav"]),
    Case("data", "wav is text", lambda s: fsdd(s, lambda f: (f / "3_theo_20.wav").write_text("hello")),
         ["3_theo_20.wav"]),
    Case("data", "wav header only", lambda s: fsdd(s, lambda f: truncate(f / "3_theo_20.wav", 0.005)), ["3_theo_20.wav"]),
    Case("data", "no wav files", lambda s: fsdd(s, lambda f: [p.unlink() for p in f.glob("*.wav")]), ["recordings"]),
    Case("data", "npz truncated", lambda s: task_config(s, "cora", lambda f: truncate(f / "cora_planetoid.npz"),
                                                        CORA, CORA_MODEL), ["cora_planetoid.npz"]),
    Case("data", "npz without arrays", lambda s: task_config(
        s, "cora", lambda f: __import__("numpy").savez(f / "cora_planetoid.npz", x=[1]), CORA, CORA_MODEL),
        ["cora_planetoid.npz", "missing arrays"]),
    Case("data", "npz is text", lambda s: task_config(s, "cora", lambda f: (f / "cora_planetoid.npz").write_text("x"),
                                                      CORA, CORA_MODEL), ["cora_planetoid.npz"]),
    Case("data", "gz truncated", lambda s: mt(s, lambda f: truncate(f / "train.de.gz")), ["train.de.gz"]),
    Case("data", "gz line counts differ", lambda s: mt(s, lambda f: gz_edit(f / "train.en.gz", lambda ls: ls[:-3])),
         ["train.en.gz"]),
    Case("data", "gz holds non-UTF-8", lambda s: mt(s, lambda f: gz_bytes(f / "train.de.gz", b"ein \xff Mann\n" * 150)),
         ["train.de.gz"]),
    Case("data", "gz not gzip", lambda s: mt(s, lambda f: (f / "val.de.gz").write_text("plain")), ["val.de.gz"]),
    # ---- own data: labels, tags, tables, readers, caches (issue 24) ----
    Case("own", "label with spaces (stripped, said once)", lambda s: own(s, {"train.csv": csv_of(
        relabel(sst2_rows(s), 0, "positive "))}, {"format": "csv"}), ["note: stripped the spaces around 2"], code=0),
    Case("own", "empty label", lambda s: own(s, {"train.csv": csv_of(relabel(sst2_rows(s), 2, ""))}, {"format": "csv"}),
         ["train.csv:4: no label"]),
    Case("own", "JSONL null label", lambda s: own(s, {"train.jsonl": jsonl_of(relabel(sst2_rows(s), 2, None))},
                                                  {"format": "jsonl"}), ["train.jsonl:3: no label: field 'label' is null"]),
    Case("own", "integer labels and one word", lambda s: own(s, {"train.csv": csv_of(relabel(
        sst2_rows(s, names=None), 3, "positive"))}, {"format": "csv"}), ["train.csv:5: label 'positive' is text"]),
    Case("own", "one class (custrev.pos/.neg)", lambda s: own(s, {
        "custrev.pos": "".join(t + "\n" for _, t in sst2_rows(s, 5)),
        "custrev.neg": "".join(t + "\n" for _, t in sst2_rows(s, 5, 5))}, {"format": "text", "files": {
            "train": "custrev.*"}}), ["every one of the 10 train rows has label 'custrev'"]),
    Case("own", "Q-person in a BIO file", lambda s: own(s, {"train.txt": wnut(s, line=20, replacement="Al\tQ-person")},
                                                        {"format": "conll"}, head="tagging"),
         ["train.txt:20: tag 'Q-person' is not valid IOB2"]),
    Case("own", "IOB1 tags", lambda s: own(s, {"train.txt": iob1(s)}, {"format": "conll"}, head="tagging"),
         ["looks like IOB1", "data.target.repair: iob1"]),
    Case("own", "IOB1 tags repaired", lambda s: own(s, {"train.txt": iob1(s)}, {"format": "conll"}, head="tagging",
                                                    data={"target": {"field": "tags", "repair": "iob1"}}),
         ["note: converted"], code=0),
    Case("own", "a third CoNLL column", lambda s: own(s, {"train.txt": wnut(s, line=12, replacement="view\tO\tNN")},
                                                      {"format": "conll"}, head="tagging"),
         ["train.txt:12: expected 2 columns (tokens, tags), found 3"]),
    Case("own", "CoNLL comment lines (UNER)", lambda s: own(s, {"train.iob2": "# sent_id = 1\n# text = a b\n"
                                                                + wnut(s, 10)}, {"format": "conll"}, head="tagging"),
         [], code=0),
    Case("own", "dev label unseen in train", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s)), "dev.csv": csv_of(
        [["neutral", "a film"]])}, {"format": "csv", "files": {"train": "train.csv", "dev": "dev.csv"}}),
         ["dev.csv:2: label 'neutral' never occurs in train"]),
    Case("own", "CSV ragged row after a quoted newline", lambda s: own(s, {"train.csv": 'text,label\n"two\nlines",a\n'
                                                                         'one,two,b\n'}, {"format": "csv"}),
         ["train.csv:4: 3 fields, but the header has 2"]),
    Case("own", "CSV in UTF-16", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s)).encode("utf-16")}, {"format": "csv"}),
         ["train.csv: the file is UTF-16"]),
    Case("own", "CSV in Latin-1", lambda s: own(s, {"train.csv": "text,label\ncaf\u00e9,a\n".encode("latin-1")},
                                                {"format": "csv"}), ["train.csv:2:4: not UTF-8", "Latin-1"]),
    Case("own", "JSONL broken line", lambda s: own(s, {"train.jsonl": jsonl_of(sst2_rows(s, 2)) + '{"text": \n'},
                                                   {"format": "jsonl"}), ["train.jsonl:3:10: not a JSON record"]),
    Case("own", "NaN samples in a wav", nan_wavs, ["bad.wav: 2 of its"]),
    Case("own", "name_pattern on a csv", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s))}, {
        "format": "csv", "name_pattern": "(?P<x>.*)"}, command="validate"), ["name_pattern: format csv does not read it"]),
    Case("own", "$ATTNTRAIN_CACHE is a file", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s))}, {"format": "csv"}),
         ["$ATTNTRAIN_CACHE=", "must be a folder"], prefix=cache_is_a_file),
    Case("own", "validate: input field not in the data", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s))}, {
        "format": "csv"}, command="validate", args=("--set", "data.input.field=sentence")),
         ["data.input.field: no field 'sentence'", "(its fields: text, label)"]),
    Case("own", "validate: split column not in the data", lambda s: own(s, {"all.csv": csv_of(sst2_rows(s))}, {
        "format": "csv", "path": "all.csv", "files": None}, data={"split": {"column": "part"}}, command="validate"),
         ["data.split.column: no field 'part'"]),
    Case("own", "validate: graph node id not in the data", lambda s: graph_tables(s, "data.graph.node_id=node"),
         ["data.graph.node_id: no field 'node'"]),
    Case("own", "validate: negative split seed", lambda s: set_key(s, "data.split.seed", -1), ["data.split.seed"]),
    Case("own", "ragged row 9 after a quoted newline in row 5", lambda s: quoted_newline_csv(
        s, '"a ragged row",positive,extra'), ["train.csv:12: 3 fields, but the header has 2"]),
    Case("own", "empty label in row 9 after a quoted newline", lambda s: quoted_newline_csv(
        s, '"a row without its label",'), ["train.csv:12: no label: field 'label' is empty"]),
    Case("own", "same-size table edit, time put back", same_size_edit,
         ["train.csv:", "no label: field 'label' is only spaces"]),
    Case("own", "Planetoid pickle calling os.system", lambda s: planetoid_folder(s, lambda f: write(
        f / "ind.cora.graph", pickle.dumps(Exploit(s.tmp / "exploited"), protocol=2))),
        ["ind.cora.graph: not a Planetoid pickle (refused posix.system"]),
    Case("own", "Planetoid file missing", lambda s: planetoid_folder(s, lambda f: (f / "ind.cora.ty").unlink()),
         ["Planetoid file not found:", "ind.cora.ty"]),
    Case("own", "Planetoid ind files read", lambda s: planetoid_folder(s, lambda f: None), [], code=0),
    Case("own", "tokenizer learned on text data", lambda s: own(s, {"train.csv": csv_of(sst2_rows(s))}, {
        "format": "csv"}, data={"input": {"field": "text", "tokenizer": "learned"}}),
         ["train.csv:2: data.input.tokenizer learned", "holds text"]),
    Case("own", "predict: French clitics as the training tokens", french_run, [], code=0,
         stdout=['"tokens": ["L\'", "homme", "qu\'", "il", "voit", "."]']),
    # ---- run directory ----
    Case("run", "best truncated", lambda s: run_file(s, lambda r: truncate(r / "best.safetensors")),
         ["best.safetensors", "--checkpoint"]),
    Case("run", "best empty", lambda s: run_file(s, lambda r: (r / "best.safetensors").write_bytes(b"")),
         ["best.safetensors"]),
    Case("run", "best random bytes", lambda s: run_file(s, lambda r: (r / "best.safetensors").write_bytes(os.urandom(999))),
         ["best.safetensors"]),
    Case("run", "best from another model", lambda s: run_file(s, lambda r: shutil.copyfile(
        latest(r) / "trainer.pt", r / "best.safetensors")), ["best.safetensors"]),
    Case("run", "best missing", lambda s: run_file(s, lambda r: (r / "best.safetensors").unlink()),
         ["best.safetensors"]),
    Case("run", "config width edited", lambda s: run_file(s, lambda r: yaml_edit(
        r / "config.yaml", lambda c: c["model"]["encoder"].update(ffn_dim=96))), ["config.yaml"]),
    Case("run", "config layers edited", lambda s: run_file(s, lambda r: yaml_edit(
        r / "config.yaml", lambda c: c["model"]["encoder"].update(num_layers=3))), ["config.yaml"]),
    Case("run", "config missing", lambda s: run_file(s, lambda r: (r / "config.yaml").unlink()), ["not a run directory"]),
    Case("run", "config non-UTF-8", lambda s: run_file(s, lambda r: edit(r / "config.yaml", lambda b: b"\xfe" + b)),
         ["config.yaml:1:1"]),
    Case("run", "config emptied", lambda s: run_file(s, lambda r: (r / "config.yaml").write_text("")), ["config.yaml"]),
    Case("run", "task.json truncated", lambda s: run_file(s, lambda r: truncate(r / "task.json")), ["task.json"]),
    Case("run", "task.json foreign", lambda s: run_file(s, lambda r: (r / "task.json").write_text('{"classes": []}')),
         ["task.json"]),
    Case("run", "task.json a list", lambda s: run_file(s, lambda r: (r / "task.json").write_text("[1, 2]")),
         ["task.json"]),
    Case("run", "task.json non-UTF-8", lambda s: run_file(s, lambda r: edit(r / "task.json", lambda b: b[:20] + b"\xff" + b[20:])),
         ["task.json"]),
    Case("run", "task.json missing", lambda s: run_file(s, lambda r: (r / "task.json").unlink()), ["task.json"]),
    Case("run", "checkpoint weights truncated", lambda s: run_file(
        s, lambda r: truncate(latest(r) / "model.safetensors"), "resume"), ["model.safetensors"]),
    Case("run", "trainer.pt truncated", lambda s: run_file(s, lambda r: truncate(latest(r) / "trainer.pt"), "resume"),
         ["trainer.pt"]),
    Case("run", "trainer.pt empty", lambda s: run_file(s, lambda r: (latest(r) / "trainer.pt").write_bytes(b""), "resume"),
         ["trainer.pt"]),
    Case("run", "trainer.pt foreign", lambda s: run_file(s, lambda r: shutil.copyfile(
        r / "best.safetensors", latest(r) / "trainer.pt"), "resume"), ["trainer.pt"]),
    Case("run", "latest points nowhere", lambda s: run_file(
        s, lambda r: (r / "checkpoints" / "latest").write_bytes(b"\xff\xfe"), "resume"), ["no checkpoint"]),
    Case("run", "checkpoints deleted", lambda s: run_file(s, lambda r: shutil.rmtree(r / "checkpoints"), "resume"),
         ["no checkpoint"]),
    Case("run", "resume with wider model", lambda s: run_file(s, lambda r: None, "resume", "--set",
                                                              "model.encoder.ffn_dim=96"), ["do not fit"]),
    Case("run", "metrics.jsonl broken line", lambda s: run_file(s, lambda r: edit(
        r / "metrics.jsonl", lambda b: b.replace(b"\n", b"\n{broken\n", 1)), "compare"), ["metrics.jsonl:2"]),
    Case("run", "metrics.jsonl non-UTF-8", lambda s: run_file(s, lambda r: edit(
        r / "metrics.jsonl", lambda b: b"\xff" + b), "compare"), ["metrics.jsonl:1:1"]),
    Case("run", "eval unknown split", lambda s: run_file(s, lambda r: None, "eval", "--split", "validation"),
         ["--split"]),
    Case("run", "eval checkpoint path missing", lambda s: run_file(s, lambda r: None, "eval", "--checkpoint",
                                                                   str(s.tmp / "x.safetensors")), ["x.safetensors"]),
    Case("run", "eval of a folder that is no run", lambda s: ["eval", str(s.tmp / "data")], ["not a run directory"]),
    Case("run", "fit over an existing run", lambda s: ["fit", str(s.config(s.raw("trained")))], ["already exists"]),
    Case("run", "run locked by another process", hold_lock, ["in use by another attntrain process"]),
    Case("run", "read-only run directory", lambda s: ["eval", str(s.tmp / "runs" / "ro")], ["cannot write here"],
         prefix=lambda s: mount_namespace(f"mount --bind -o ro '{s.copy(s.tmp / 'runs' / 'trained', s.tmp / 'runs' / 'ro')}' "
                                          f"'{s.tmp / 'runs' / 'ro'}'")),
    Case("run", "disk full during fit", lambda s: ["fit", str(s.config({**s.raw("full"), "runs_dir": str(s.tmp / "small")}))],
         ["No space left on device"], prefix=lambda s: mount_namespace(
             f"mkdir -p '{s.tmp / 'small'}' && mount -t tmpfs -o size=300k tmpfs '{s.tmp / 'small'}'")),
    Case("run", "NaN loss (lr 1e6)", lambda s: ["fit", str(s.config(s.raw("nan", lr=1e6, warmup_steps=0, max_steps=40,
                                                                        max_nonfinite=3)))],
         ["training diverged"], code=3),
    Case("run", "fit --overwrite with a broken train file", overwrite_with_bad_data, ["en_ewt-ud-train.conllu"]),
    Case("run", "resume of a finished run", lambda s: ["fit", "--resume", str(s.run_copy())], ["this run is finished"]),
    Case("run", "resume on changed data", resume_changed_data, ["train data changed", "--allow-data-change"]),
    Case("run", "export of a graph run", graph_run, ["graph runs are not exported"]),
    Case("run", "serve on a busy port", busy_port, ["another program may hold it"]),
    # ---- predict ----
    Case("predict", "--file missing", lambda s: ["predict", str(s.tmp / "runs" / "trained"), "--file",
                                                 str(s.tmp / "none.txt")], ["none.txt"]),
    Case("predict", "--file non-UTF-8", lambda s: ["predict", str(s.tmp / "runs" / "trained"), "--file",
                                                   str(write(s.tmp / "in.txt", b"a\ncaf\xe9\n"))], ["in.txt:2:4"]),
    Case("predict", "stdin non-UTF-8", lambda s: ["predict", str(s.tmp / "runs" / "trained")], ["<stdin>:1:3"],
         stdin=b"ok\xff\n"),
    Case("predict", "--file is a folder", lambda s: ["predict", str(s.tmp / "runs" / "trained"), "--file", str(s.tmp)],
         ["--file"]),
    Case("predict", "run without best weights", lambda s: run_file(s, lambda r: (r / "best.safetensors").unlink(),
                                                                   "predict"), ["best.safetensors"]),
    Case("predict", "attention layer out of range", lambda s: ["attention", str(s.tmp / "runs" / "trained"), "a b",
                                                               "--layer", "9"], ["--layer"]),
    Case("predict", "1 MB line (tagged in windows)", big_line, [], code=0),
    # ---- command line ----
    Case("cli", "unknown option", lambda s: ["fit", "--nosuch"], ["No such option: --nosuch"]),
    Case("cli", "missing argument", lambda s: ["eval"], ["Missing argument"]),
    Case("cli", "unknown command", lambda s: ["trian"], ["No such command"]),
    Case("cli", "bad option value", lambda s: ["fit", "--seeds", "zero"], ["--seeds"]),
    Case("cli", "fit without config", lambda s: ["fit"], ["CONFIG"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--only", default="", help="run the cases whose group or name contains this")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fault_sweep."))
    sweep = Sweep(tmp)
    started = time.perf_counter()
    try:
        sweep.build_data()
        sweep.train()
        held = tried = skipped = 0
        for case in CASES:
            if args.only and args.only not in f"{case.group} {case.name}":
                continue
            prefix = case.prefix(sweep) if case.prefix else []
            if prefix is None:
                skipped += 1
                print(f"skip  {case.group:8} {case.name} (no private mount namespace)")
                continue
            argv = case.setup(sweep)
            t0 = time.perf_counter()
            result = run_cli(argv, prefix=prefix, stdin=case.stdin)
            seconds = time.perf_counter() - t0
            errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
            ok = (result.returncode == case.code and "Traceback" not in result.stderr
                  and all(n in result.stderr for n in case.needles) and (case.code == 0 or len(errors) == 1)
                  and all(n in result.stdout for n in case.stdout))
            if case.name.startswith("1 MB line") and ok:
                ok = len(result.stdout.splitlines()) == 1 and len(result.stdout.split()) == 294000
            tried += 1
            held += ok
            message = errors[0] if errors else (result.stderr.strip().splitlines() or [""])[-1]
            print(f"{'held' if ok else 'FAIL'}  {case.group:8} {case.name:34} exit {result.returncode}  {seconds:5.1f}s  "
                  f"{message.replace(str(tmp), '<tmp>')[:150]}", flush=True)
        for holder in getattr(sweep, "holders", []):
            holder.kill()
        print(f"\nheld {held} / tried {tried}" + (f" ({skipped} skipped)" if skipped else "")
              + f"  in {time.perf_counter() - started:.0f} s")
        return 0 if held == tried else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
