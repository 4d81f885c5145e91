"""Peak memory of one training step on Cora: attention along edges (sparse) vs over all node pairs.

Each measurement runs in a fresh subprocess: build the model of `--config` (cora_gat.yaml), take the first N nodes of
Cora (the induced subgraph: its edges among those nodes), run one forward + backward, and report
the growth of peak resident memory (ru_maxrss) caused by that step. With `graph_mask: edges` the
attention tensors hold one entry per edge and head; with `none` they hold N x N per head.

    python scripts/bench_graph_memory.py                 # N = 677, 1354, 2708 (all of Cora)
    python scripts/bench_graph_memory.py --out bench_results/graph_memory.json
    python scripts/bench_graph_memory.py --config other.yaml   # any planetoid config
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from benchkit import REPO, child_json, markdown_table, write_json


def measure(config: str, nodes: int, mask: str) -> dict:
    """Runs inside the child process."""
    import torch

    from attntrain.config import load_config
    from attntrain.data import build_task
    from attntrain.model import build_model

    torch.manual_seed(0)
    cfg = load_config(config, [f"data.graph_mask={mask}", "train.seeds=1"])
    task = build_task(cfg)
    task.prepare()
    model = build_model(cfg, task.info()).train()
    batch = task.batch("train", [0])
    batch["features"] = batch["features"][:, :nodes]
    batch["mask"] = batch["mask"][:, :nodes]
    batch["labels"] = batch["labels"][:, :nodes]
    edges = task.graph()["edges"]
    edges = edges[:, (edges < nodes).all(0)]
    if mask == "edges":
        batch["edges"] = edges
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model(batch)["loss"].backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"nodes": nodes, "mask": mask, "edges": int(edges.shape[1]), "step_peak_mb": (after - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "cora_gat.yaml"), help="a planetoid config")
    parser.add_argument("--nodes", type=int, nargs="+", default=[677, 1354, 2708])
    parser.add_argument("--out", type=Path, default=REPO / "bench_results" / "graph_memory.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.config, int(args.child[0]), args.child[1])))
        return
    rows = []
    for nodes in args.nodes:
        for mask in ("edges", "none"):
            rows.append(child_json([sys.executable, __file__, "--config", str(Path(args.config).resolve()),
                                    "--child", str(nodes), mask], check=True))
    print(markdown_table(["nodes", "edges (incl. self loops)", "graph_mask", "peak memory of one step (MiB)"],
                         [[r["nodes"], r["edges"], r["mask"], f"{r['step_peak_mb']:.1f}"] for r in rows], align="rrlr"))
    write_json(args.out, rows)


if __name__ == "__main__":
    main()
