"""Start-up time of the CLI: help, validate and config errors against `import torch`; predict's cold start.

What it measures
    Wall time of fresh processes, as a user waits for them: `attntrain --help`, `attntrain fit --help`,
    `attntrain validate` of every shipped config, two config errors (one from `validate`, one from
    `fit`, which must fail before loading torch) and, as baselines in the same run, a bare
    `python -c pass` and `python -c "import torch"`. Rounds are interleaved (every command once per
    round) so that load on a shared machine hits all alike; figures are medians over `--repeats`
    rounds. One extra run of each command with `python -X importtime` tells whether it imported torch.

    Predict's cold start: `attntrain predict RUN "<sentence>"` in a fresh process, split into Python's
    own start and exit (with torch's teardown), `import torch`, the rest of what `attntrain predict`
    imports before it reads the run (attntrain's model, data layer and trainer), loading (config,
    vocabularies, weights: `Predictor.from_run`), the first forward on the sentence, and a second
    forward for comparison (warm). Without `--run`, a tiny run is trained first
    (configs/pos_ewt_quick.yaml for 20 steps: the quick model and the full EWT vocabulary).

How to run
    python scripts/bench_startup.py --threads 1         # what `make bench-startup` runs
    python scripts/bench_startup.py --run runs/pos_ewt_quick --repeats 9

    Results: a Markdown table on stdout and JSON in bench_results/bench_startup.json (`--out`).
    This script imports neither torch nor attntrain itself: every figure comes from a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from benchkit import REPO, interleaved, markdown_table, thread_env, timed, write_json

SENTENCE = "The quick brown fox jumped over the lazy dog near the river bank ."
TINY_RUN = ["--set", "train.max_steps=20", "--set", "train.eval_every=20", "--set", "data.eval_limit=200",
            "--set", "train.progress=false", "--set", "name=startup_predict"]

# Runs in a fresh process: the phases of `attntrain predict RUN SENTENCE`, as JSON on the last line.
PREDICT_PHASES = """
import json, sys, time
start = time.perf_counter()
import torch
torch_imported = time.perf_counter()
from attntrain.runs import predict  # everything `attntrain predict` imports before it reads the run
from attntrain.predictor import Predictor
imported = time.perf_counter()
torch.set_num_threads(int(sys.argv[3]))
before = set(sys.modules)
predictor = Predictor.from_run(sys.argv[1])
loaded = time.perf_counter()
during_load = sorted({m.split(".")[0] for m in set(sys.modules) - before})
first = predictor.lines(predictor.parse([sys.argv[2]]))
forward = time.perf_counter()
second = predictor.lines(predictor.parse([sys.argv[2]]))
warm = time.perf_counter()
assert first == second and first and first[0]
print(json.dumps({"import_torch": torch_imported - start, "import_attntrain": imported - torch_imported,
                  "load": loaded - imported, "forward": forward - loaded,
                  "warm_forward": warm - forward, "inside": forward - start, "packages_imported_by_load": during_load,
                  "output": first[0]}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds; figures are medians")
    p.add_argument("--run", default=None, help="a trained run for predict (default: train a tiny one first)")
    p.add_argument("--runs-dir", default="bench_results/runs", help="where the tiny run is trained")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of every child (1 on a shared machine)")
    p.add_argument("--out", default="bench_results/bench_startup.json", help="JSON results file")
    return p.parse_args()


def child_env(threads: int) -> dict[str, str]:
    """The environment of every child: this checkout importable, a fixed number of threads."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return thread_env(threads, PYTHONPATH=path)


def commands() -> list[tuple[str, list[str], int]]:
    """(label, argv after `python`, expected exit code) of every timed command."""
    cli = ["-m", "attntrain"]
    rows = [("python -c pass", ["-c", "pass"], 0),
            ('python -c "import torch"', ["-c", "import torch"], 0),
            ("attntrain --help", [*cli, "--help"], 0),
            ("attntrain fit --help", [*cli, "fit", "--help"], 0)]
    for config in sorted((REPO / "configs").glob("*.yaml")):
        name = config.relative_to(REPO)
        rows.append((f"attntrain validate {name}", [*cli, "validate", str(name)], 0))
    rows.append(("validate, bad key (exit 2)",
                 [*cli, "validate", "configs/pos_ewt.yaml", "--set", "model.encoder.num_haeds=4"], 2))
    rows.append(("fit, bad choice (exit 2)",
                 [*cli, "fit", "configs/pos_ewt.yaml", "--set", "model.encoder.kind=transfomer"], 2))
    return rows


def wall(argv: list[str], env: dict[str, str], expected: int) -> float:
    seconds, done = timed(subprocess.run, [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != expected:
        raise SystemExit(f"python {' '.join(argv)}: exit {done.returncode}, expected {expected}\n{done.stderr}")
    return seconds


def imports_torch(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True)
    return any(line.rstrip().endswith("| torch") for line in done.stderr.splitlines())


def tiny_run(args, env: dict[str, str]) -> Path:
    run = REPO / args.runs_dir / "startup_predict"
    if not (run / "config.yaml").is_file():
        print(f"training a tiny run for predict: {run}", flush=True)
        subprocess.run([sys.executable, "-m", "attntrain", "fit", "configs/pos_ewt_quick.yaml", "--overwrite",
                        "--set", f"runs_dir={REPO / args.runs_dir}", "--set", f"train.threads={args.threads}",
                        *TINY_RUN], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return run


def time_commands(args, env) -> list[dict]:
    rows = commands()
    times = interleaved({label: (lambda argv=argv, expected=expected: wall(argv, env, expected))
                         for label, argv, expected in rows}, args.repeats,
                        on_round=lambda r, _: print(f"commands: round {r + 1}/{args.repeats} done", flush=True))
    torch_median = statistics.median(times['python -c "import torch"'])
    return [{"command": label, "argv": argv, "seconds": times[label], "median": statistics.median(times[label]),
             "vs_import_torch": statistics.median(times[label]) / torch_median,
             "imports_torch": imports_torch(argv, env)} for label, argv, _ in rows]


def time_predict(args, env, run: Path) -> dict:
    phases: list[dict] = []
    totals: list[float] = []
    for round_ in range(args.repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PREDICT_PHASES, str(run), SENTENCE, str(args.threads)],
                              cwd=REPO, env=env, capture_output=True, text=True)
        outside = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"predict phases failed:\n{done.stderr}")
        phase = json.loads(done.stdout.strip().splitlines()[-1])
        phase["python_start"] = outside - phase["inside"] - phase["warm_forward"]  # and torch's teardown at exit
        phases.append(phase)
        totals.append(wall(["-m", "attntrain", "predict", str(run), SENTENCE], env, 0))
        print(f"predict: round {round_ + 1}/{args.repeats} done", flush=True)
    keys = ("python_start", "import_torch", "import_attntrain", "load", "forward", "warm_forward")
    medians = {key: statistics.median(p[key] for p in phases) for key in keys}
    return {"run": str(run), "sentence": SENTENCE, "output": phases[0]["output"], "medians": medians,
            "attntrain_predict_wall": statistics.median(totals), "attntrain_predict_seconds": totals,
            "packages_imported_by_load": phases[0]["packages_imported_by_load"], "phases": phases}


def print_tables(rows: list[dict], predict: dict, args) -> None:
    print(f"\nWall time of a fresh process, median of {args.repeats} interleaved rounds, {args.threads} thread(s)\n")
    print(markdown_table(["command", "seconds (median)", "min - max", "/ `import torch`", "imports torch"],
                         [[f"`{r['command']}`", f"{r['median']:.2f}", f"{min(r['seconds']):.2f} - {max(r['seconds']):.2f}",
                           f"{r['vs_import_torch']:.2f}x", "yes" if r["imports_torch"] else "no"] for r in rows],
                         align="lrrrl"))
    m = predict["medians"]
    cold = m["python_start"] + m["import_torch"] + m["import_attntrain"] + m["load"] + m["forward"]
    print(f"\n`attntrain predict {predict['run']} \"<sentence of {len(SENTENCE.split())} words>\"` cold start "
          f"(medians of {args.repeats}; the whole command: {predict['attntrain_predict_wall']:.2f} s)\n")
    names = {"python_start": "Python start and exit", "import_torch": "import torch",
             "import_attntrain": "import attntrain's model, data and trainer modules",
             "load": "loading (config, vocabularies, weights)", "forward": "first forward (one sentence)"}
    print(markdown_table(["phase", "seconds", "share"],
                         [*([name, f"{m[key]:.3f}", f"{m[key] / cold:.0%}"] for key, name in names.items()),
                          ["**cold start**", f"**{cold:.2f}**", ""],
                          ["second forward, for comparison", f"{m['warm_forward']:.3f}", ""]], align="lrr"))
    late = ", ".join(predict["packages_imported_by_load"]) or "none"
    print(f"\npackages first imported while loading: {late}")


def main() -> None:
    args = parse_args()
    env = child_env(args.threads)
    run = Path(args.run) if args.run else tiny_run(args, env)
    rows = time_commands(args, env)
    predict = time_predict(args, env, run)
    print_tables(rows, predict, args)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python", *sys.argv]),
              "repeats": args.repeats, "threads": args.threads, "python": platform.python_version(),
              "torch": metadata.version("torch"), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "rows": rows, "predict": predict}
    print(f"\nwrote {write_json(args.out, result, indent=1)}")


if __name__ == "__main__":
    main()
