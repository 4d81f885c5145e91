"""The harness every scripts/bench_*.py shares, so that each script holds only its comparison.

- thread pinning: `pin_threads` (this process) and `thread_env` (a child process's environment);
- interleaved rounds: `interleaved` runs every variant once per round, in an order reversed every other
  round, so that load from other processes on a shared machine falls on all of them alike;
- timing and memory: `timed`, `status_mib`, `reset_peak`, `peak_mib` (Linux /proc);
- child processes that answer one JSON line: `child_json`;
- output: `markdown_table` and `write_json` (bench_results/*.json).

Standard library only; torch is imported when a function needs it. Imported by the scripts beside it
(scripts/ is on sys.path when one runs `python scripts/bench_X.py`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench_results"


# ---- threads -------------------------------------------------------------------------------------

def thread_env(threads: int, base: Optional[dict] = None, **extra: str) -> dict[str, str]:
    """A child's environment with OpenMP / MKL pinned to `threads` (and `extra` variables set)."""
    return {**(os.environ if base is None else base), "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), **extra}


def pin_threads(threads: int) -> None:
    """This process computes on `threads` CPU threads (torch's intra-op pool)."""
    import torch

    torch.set_num_threads(threads)


# ---- timing --------------------------------------------------------------------------------------

def timed(function: Callable[..., Any], *args, **kwargs) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


ORDERS = ("reverse", "rotate", "fixed")


def round_order(names: list, index: int, order: str = "reverse") -> list:
    """The variants' order in round `index`: reversed every other round (A B C, C B A, ...), rotated by one
    each round (A B C, B C A, C A B, ...), or fixed."""
    if order == "reverse":
        return names[::-1] if index % 2 else list(names)
    if order == "rotate":
        shift = index % len(names)
        return names[shift:] + names[:shift]
    if order == "fixed":
        return list(names)
    raise ValueError(f"order must be one of {ORDERS}, not {order!r}")


def cpu_seconds(function: Callable[[], Any]) -> float:
    """CPU seconds of this process (all its threads) during one call."""
    start = time.process_time()
    function()
    return time.process_time() - start


def interleaved(variants: dict[Hashable, Callable[[], Any]], rounds: int, *, order: str = "reverse",
                warmup: bool = False, on_round: Optional[Callable[[int, dict], None]] = None) -> dict[Hashable, list]:
    """name -> what its function returned in each round (usually seconds).

    Every round calls each variant once, in `round_order`, so that load from other processes falls on all
    of them alike. `warmup` calls each once first and drops the result. `on_round(round, results_so_far)`
    runs after each round (for progress lines).
    """
    if warmup:
        for function in variants.values():
            function()
    results: dict[Hashable, list] = {name: [] for name in variants}
    names = list(variants)
    for index in range(rounds):
        for name in round_order(names, index, order):
            results[name].append(variants[name]())
        if on_round is not None:
            on_round(index, results)
    return results


def interleaved_steps(runs: dict[Hashable, Iterator[tuple]]) -> dict[Hashable, tuple]:
    """Step several runs in turn (each an iterator of per-step tuples such as (seconds, tokens)), one step
    each, until all are done, so that load on a shared machine hits all alike; returns each run's column sums."""
    totals: dict[Hashable, tuple] = {name: () for name in runs}
    active = dict(runs)
    while active:
        for name, steps in list(active.items()):
            step = next(steps, None)
            if step is None:
                del active[name]
                continue
            totals[name] = tuple(a + b for a, b in zip(totals[name], step)) if totals[name] else tuple(step)
    return totals


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio_median(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of numerator / denominator within the round (robust to drift between rounds)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


# ---- memory (Linux) ------------------------------------------------------------------------------

def status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident peak) of this process, from /proc/self/status (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset the resident peak (VmHWM) to the current resident size."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_mib(step: Callable[[], Any]) -> float:
    """MiB the resident size peaks above its level before one call of `step` (call a warm-up first)."""
    reset_peak()
    before = status_mib("VmRSS")
    step()
    return status_mib("VmHWM") - before


# glibc would keep freed tensors in its heap (its mmap threshold grows with each large free), so a resident peak
# would follow fragmentation; a fixed threshold returns every block >= 64 KiB on free. Only for memory children:
# fresh pages for every tensor cost page faults, which would distort timings.
MEMORY_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


# ---- child processes -----------------------------------------------------------------------------

def child_json(argv: list[str], *, env: Optional[dict] = None, cwd: Path = REPO, check: bool = False) -> dict:
    """Run a child process and read the JSON object on the last line of its stdout.

    A child that fails raises RuntimeError with the last line of its stderr (CalledProcessError with `check`).
    """
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=check)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- output --------------------------------------------------------------------------------------

def markdown_table(header: list[str], rows: Iterable[Iterable[Any]], *, align: Optional[str] = None) -> str:
    """A Markdown table; `align` holds one character per column: 'l' (---) or 'r' (---:); default all '---'."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in (align or "l" * len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The command that ran this benchmark, for the results file."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def write_json(path: str | Path, payload: Any, *, indent: Optional[int] = 2) -> Path:
    """Write the results atomically (folders made; an interrupted write leaves the old file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=indent) + "\n")
    os.replace(partial, path)
    return path


def today() -> str:
    return time.strftime("%Y-%m-%d")
