"""Peak memory and start-up time of `attntrain fit` on Multi30k (or, with --generic, SST-2 as CSV) repeated N times.

Each scale gets plain line-aligned files {train,val,test_2016_flickr}.{de,en} in a temporary folder (the
training pair repeated N times; dev and test as shipped) and a copy of `--config` (default
configs/own/multi30k_text.yaml) pointing at them. Each `fit` then runs in its own subprocess for `--steps`
optimizer steps (dev/test cut to a few sentences, so the final evaluation is short) with an empty data cache,
so the figures include reading, learning the subword vocabulary and encoding. With `--generic` the data is
SST-2 through the generic task instead: the shipped Kim (2014) sentences written as CSV files `text,label`
(train repeated N times, dev and test as shipped) read by a copy of configs/own/sst2_csv.yaml. Reported per run:

- peak resident memory of the fit process (its ru_maxrss, from os.wait4);
- start: seconds from launch until the run's `start` record (data read, vocabulary learned, train encoded);
- first step: seconds from launch until the first `train` record (train.log_every=1), and the CPU seconds
  (user + system, all threads) the fit had used by then: on a shared machine the wall clock depends on
  what else runs, the CPU time much less.

    python scripts/bench_data_scale.py                       # scales 1 and 20, 100 steps
    python scripts/bench_data_scale.py --scales 1 20 --warm  # also a second fit that finds the cache filled
    python scripts/bench_data_scale.py --set data.translation.vocab_sample=null    # extra overrides: BPE from every pair
    python scripts/bench_data_scale.py --generic --scales 1 20   # the generic task (csv rows, sequence labels)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchkit import REPO, markdown_table, thread_env, write_json

RAW = {"train": "train", "dev": "val", "test": "test_2016_flickr"}  # Multi30k file stems under raw/


def data_root() -> Path:
    from attntrain.data.sources.root import data_root as root

    return root()


def write_copy(folder: Path, scale: int, languages: list[str]) -> None:
    """Plain-text files of Multi30k in `folder`, the training files repeated `scale` times."""
    raw = data_root() / "multi30k" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for stem in RAW.values():
        for lang in languages:
            text = gzip.decompress((raw / f"{stem}.{lang}.gz").read_bytes())
            with open(folder / f"{stem}.{lang}", "wb") as f:
                for _ in range(scale if stem == "train" else 1):
                    f.write(text)


def write_csv_copy(folder: Path, scale: int) -> None:
    """SST-2 (the Kim split) as {train,dev,test}.csv of text,label in `folder`, train repeated `scale` times."""
    import csv

    from attntrain.data.tasks.presets import SENTIMENT

    kim = data_root() / "sst2" / "stsa_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        lines = (kim / f"stsa.binary.{split}").read_text(encoding="utf-8").splitlines()
        pairs = (line.partition(" ") for line in lines if line.strip())
        rows = [(text, SENTIMENT[int(label)]) for label, _, text in pairs]
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["text", "label"])
            for _ in range(scale if split == "train" else 1):
                out.writerows(rows)


def write_csv_config(base: Path, folder: Path, out: Path) -> None:
    raw = yaml.safe_load(base.read_text())
    raw["data"]["source"]["files"] = {split: str(folder / f"{split}.csv") for split in ("train", "dev", "test")}
    out.write_text(yaml.safe_dump(raw, sort_keys=False))


def write_config(base: Path, folder: Path, out: Path) -> None:
    raw = yaml.safe_load(base.read_text())
    raw["data"]["source"]["files"] = {split: str(folder / stem) for split, stem in RAW.items()}
    out.write_text(yaml.safe_dump(raw, sort_keys=False))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_record(metrics: Path, kind: str, seen: dict, pid: int) -> None:
    """Note when (wall clock, and CPU time of the fit) a record of `kind` first appears in metrics.jsonl."""
    if kind in seen or not metrics.is_file():
        return
    for line in metrics.read_text().splitlines():
        if line.strip() and json.loads(line).get("kind") == kind:
            seen[kind] = time.perf_counter()
            try:
                seen[f"{kind}_cpu"] = cpu_seconds(pid)
            except (OSError, IndexError):
                pass
            return


def run_fit(config: Path, work: Path, name: str, cache: Path, steps: int, extra: list[str]) -> dict:
    """One `fit` in a fresh process; its peak RSS and the times of its first records."""
    sets = [f"name={name}", f"runs_dir={work / 'runs'}", f"train.max_steps={steps}", "train.log_every=1",
            "train.threads=1", "train.progress=false", "data.eval_limit=16", *extra]
    command = [sys.executable, "-m", "attntrain", "fit", str(config), "--overwrite"]
    command += [item for s in sets for item in ("--set", s)]
    env = thread_env(1, ATTNTRAIN_CACHE=str(cache), PYTHONPATH=str(REPO))  # train.threads=1 as well
    metrics = work / "runs" / name / "metrics.jsonl"
    log = open(work / f"{name}.log", "w")
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    seen: dict = {}
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        first_record(metrics, "start", seen, child.pid)
        first_record(metrics, "train", seen, child.pid)
        time.sleep(0.05)
    end = time.perf_counter()
    log.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"fit {name} failed; see {work / f'{name}.log'}:\n" + (work / f"{name}.log").read_text()[-3000:])
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "start_s": seen["start"] - start,
            "first_step_s": seen["train"] - start, "first_step_cpu_s": seen.get("train_cpu"), "total_s": end - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="default: configs/own/multi30k_text.yaml (configs/own/sst2_csv.yaml with --generic)")
    parser.add_argument("--generic", action="store_true",
                        help="SST-2 sentences as CSV through the generic task instead of Multi30k through seq2seq")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warm", action="store_true", help="also time a second fit that finds the data cache filled")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every fit")
    parser.add_argument("--out", type=Path, default=REPO / "bench_results" / "data_scale.json")
    args = parser.parse_args()
    if args.config is None:
        args.config = REPO / "configs" / "own" / ("sst2_csv.yaml" if args.generic else "multi30k_text.yaml")
    if args.generic and args.out == parser.get_default("out"):
        args.out = REPO / "bench_results" / "data_scale_generic.json"
    languages = None if args.generic else yaml.safe_load(args.config.read_text())["data"]["source"]["languages"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_data_scale_") as tmp:
        work = Path(tmp)
        for scale in args.scales:
            folder = work / f"x{scale}"
            config = work / f"x{scale}.yaml"
            if args.generic:
                write_csv_copy(folder, scale)
                write_csv_config(args.config, folder, config)
            else:
                write_copy(folder, scale, languages)
                write_config(args.config, folder, config)
            cache = work / f"cache_x{scale}"
            kinds = ["cold", "warm"] if args.warm else ["cold"]
            for kind in kinds:
                result = run_fit(config, work, f"x{scale}_{kind}", cache, args.steps, args.extra)
                rows.append({"scale": scale, "cache": kind, **result})
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
    base = {r["cache"]: r for r in rows if r["scale"] == args.scales[0]}
    first = args.scales[0]
    header = ["scale", "cache", "peak RSS (MiB)", f"/ {first}x", "start (s)", "first step (s)", f"/ {first}x",
              "CPU to first step (s)", f"/ {first}x"]
    table = []
    for r in rows:
        b = base[r["cache"]]
        table.append([f"{r['scale']}x", r["cache"], f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] / b['peak_rss_mb']:.2f}",
                      f"{r['start_s']:.1f}", f"{r['first_step_s']:.1f}", f"{r['first_step_s'] / b['first_step_s']:.2f}",
                      f"{r['first_step_cpu_s']:.1f}", f"{r['first_step_cpu_s'] / b['first_step_cpu_s']:.2f}"])
    print("\n" + markdown_table(header, table, align="rlrrrrrrr"))
    write_json(args.out, {"steps": args.steps, "extra": args.extra, "generic": args.generic, "runs": rows})


if __name__ == "__main__":
    main()
