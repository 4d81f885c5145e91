"""Load test of `attntrain serve` on 127.0.0.1: requests/s and p50/p99 latency, dynamic batching on vs off.

    python scripts/bench_serve.py RUN [--requests 2000] [--concurrency 1,8,64] [--threads 1]

Starts two servers on the run (max_batch 32 and max_batch 1 = batching off), sends the same
`--requests` one-input requests at each concurrency to both, alternating, and checks every answer
against `Predictor.records` (what `attntrain predict --format jsonl` prints): labels and tags exactly,
probabilities and scores within 1e-4. Inputs are the run's test split (text runs send tokens,
translation runs the source sentence). Prints a table and writes bench_results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx
from benchkit import REPO, interleaved, markdown_table, pin_threads, thread_env, today, write_json

sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, port: int, threads: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "attntrain", "serve", run, "--port", str(port), "--threads", str(threads),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    process = subprocess.Popen(command, cwd=REPO, env=thread_env(threads, PYTHONPATH=str(REPO)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stderr.read().decode()[-2000:]}")
    raise SystemExit("server did not start in 60 s")


def bench_inputs(run: str, count: int):
    """(request inputs, expected records) from the run's test split."""
    from attntrain.predictor import Predictor

    pin_threads(1)
    predictor = Predictor.from_run(run)
    raw = [ex for ex in predictor.task.split_raw("test") if not predictor.task.is_empty(ex)][:count]
    if predictor.task.input == "text":
        inputs = [{"tokens": list(ex["words"])} for ex in raw]
        examples = [predictor.from_tokens(x["tokens"]) for x in inputs]
    elif predictor.task.input == "subwords":
        inputs = [ex["source"] for ex in raw]
        examples = predictor.parse(inputs)
    else:
        raise SystemExit(f"bench_serve: text and translation runs only (this run reads {predictor.task.input})")
    return inputs, predictor.records(examples)


def same(got: dict, want: dict) -> bool:
    if got.keys() != want.keys():
        return False
    for key, value in want.items():
        if isinstance(value, float):
            if abs(got[key] - value) > 1e-4:
                return False
        elif isinstance(value, dict):
            if any(abs(got[key][k] - v) > 1e-4 for k, v in value.items()):
                return False
        elif got[key] != value:
            return False
    return True


async def load(port: int, inputs: list, expected: list[dict], requests: int, concurrency: int) -> dict:
    latencies, wrong, counter = [], 0, iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as client:
        before = (await client.get("/info")).json()["served"]["batches"]
        async def worker():
            nonlocal wrong
            for i in counter:
                k = i % len(inputs)
                start = time.perf_counter()
                response = await client.post("/predict", json={"input": inputs[k]})
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200 or not same(response.json()["predictions"][0], expected[k]):
                    wrong += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        model_calls = (await client.get("/info")).json()["served"]["batches"] - before
    latencies.sort()
    return {"requests": requests, "concurrency": concurrency, "seconds": elapsed, "requests_per_s": requests / elapsed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "wrong": wrong, "model_calls": model_calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--inputs", type=int, default=500, help="distinct test inputs, cycled")
    parser.add_argument("--out", default=str(REPO / "bench_results" / "serve.json"))
    args = parser.parse_args()

    inputs, expected = bench_inputs(args.run, args.inputs)
    ports = {"batching": free_port(), "no batching": free_port()}
    servers = {"batching": start_server(args.run, ports["batching"], args.threads, args.max_batch, args.max_wait_ms),
               "no batching": start_server(args.run, ports["no batching"], args.threads, 1, 0.0)}
    rows = []
    try:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            def measure(mode: str, concurrency: int = concurrency) -> dict:
                row = {"mode": mode, **asyncio.run(load(ports[mode], inputs, expected, args.requests, concurrency))}
                print(f"{mode:12s} c={concurrency:3d}: {row['requests_per_s']:8.1f} req/s  p50 {row['p50_ms']:7.1f} ms  "
                      f"p99 {row['p99_ms']:7.1f} ms  wrong {row['wrong']}  model calls {row['model_calls']}",
                      flush=True)
                return row

            # one round per concurrency, batching then none, so that drift hits both alike
            done = interleaved({mode: (lambda mode=mode: measure(mode)) for mode in ("batching", "no batching")}, 1)
            rows += [done["batching"][0], done["no batching"][0]]
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(10)

    header = ["concurrent clients", "batching req/s", "p50 ms", "p99 ms", "no batching req/s", "p50 ms", "p99 ms",
              "batching / none", "inputs per model call (batching)", "wrong answers"]
    print("\n" + markdown_table(header, [
        [on["concurrency"], f"{on['requests_per_s']:.1f}", f"{on['p50_ms']:.1f}", f"{on['p99_ms']:.1f}",
         f"{off['requests_per_s']:.1f}", f"{off['p50_ms']:.1f}", f"{off['p99_ms']:.1f}",
         f"**{on['requests_per_s'] / off['requests_per_s']:.2f}x**", f"{on['requests'] / on['model_calls']:.1f}",
         on["wrong"] + off["wrong"]] for on, off in zip(rows[::2], rows[1::2])], align="r" * len(header)))
    out = write_json(args.out, {"date": today(), "run": args.run, "args": vars(args), "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
