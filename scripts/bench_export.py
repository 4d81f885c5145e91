"""Inference speed of an exported ONNX model under onnxruntime vs the same model in torch (eager).

    python scripts/bench_export.py RUN [--threads 1] [--rounds 5]

Exports RUN (a tagging or sequence run) to a temporary ONNX file, then runs the first 512 test
examples, length-sorted, in batches of 1 and of 32, alternating torch and onnxruntime round by
round in one process; reports medians of inputs/s, the ratio, and the largest absolute difference of
the logits. Prints a table and writes bench_results/export.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchkit import REPO, interleaved, markdown_table, pin_threads, timed, today, write_json

sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--out", default=str(REPO / "bench_results" / "export.json"))
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from attntrain.export import LogitsModel, export_run, sample_batch
    from attntrain.runs import load_run

    pin_threads(args.threads)
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_run(args.run, fmt="onnx", out=path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    cfg, task, model, _ = load_run(args.run, device="cpu")
    wrapper = LogitsModel(model, names).eval()
    raw = [ex for ex in task.split_raw("test") if not task.is_empty(ex)][: args.examples]
    raw.sort(key=lambda ex: task.encode(ex, max_len=task.eval_max_len())["length"])

    rows = []
    for batch_size in (1, 32):
        batches = [sample_batch(task, raw[i:i + batch_size]) for i in range(0, len(raw), batch_size)]
        feeds = [{n: b[n].numpy() for n in names} for b in batches]
        def run_torch():
            with torch.no_grad():
                return [wrapper(*[b[n] for n in names]).numpy() for b in batches]

        def run_onnx():
            return [session.run(["logits"], feed)[0] for feed in feeds]

        done = interleaved({"torch": lambda: timed(run_torch), "onnxruntime": lambda: timed(run_onnx)}, args.rounds,
                           order="fixed")
        speeds = {name: [len(raw) / seconds for seconds, _ in runs] for name, runs in done.items()}
        worst = max(float(np.abs(a - b).max()) for (_, outputs), (_, reference) in zip(done["onnxruntime"], done["torch"])
                    for a, b in zip(outputs, reference))
        medians = {k: statistics.median(v) for k, v in speeds.items()}
        rows.append({"batch_size": batch_size, "torch_inputs_per_s": medians["torch"],
                     "onnxruntime_inputs_per_s": medians["onnxruntime"],
                     "ratio": medians["onnxruntime"] / medians["torch"], "max_abs_diff": worst,
                     "rounds": speeds})
        print(f"batch {batch_size:2d}: torch {medians['torch']:8.1f}/s  onnxruntime {medians['onnxruntime']:8.1f}/s  "
              f"ratio {medians['onnxruntime'] / medians['torch']:.2f}x  max |diff| {worst:.2e}", flush=True)

    print("\n" + markdown_table(["batch", "torch inputs/s", "onnxruntime inputs/s", "onnxruntime / torch",
                                 "max abs difference"],
                                [[r["batch_size"], f"{r['torch_inputs_per_s']:.1f}", f"{r['onnxruntime_inputs_per_s']:.1f}",
                                  f"**{r['ratio']:.2f}x**", f"{r['max_abs_diff']:.1e}"] for r in rows], align="rrrrr"))
    out = write_json(args.out, {"date": today(), "run": args.run, "args": vars(args), "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
