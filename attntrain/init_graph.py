"""`attntrain init` on a node table + an edge table: node classification with graph attention, sized."""

from __future__ import annotations

from pathlib import Path

from attntrain.errors import UserError
from attntrain.init_sources import TABLE_SUFFIXES


def _yaml_value(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("\n...")


def graph_config(nodes: Path, edges: Path, target: str, input_field: str | None, out: Path | None = None) -> str:
    """A config for a node table + an edge table; one optimizer step is one pass over the whole graph."""
    from attntrain.data.sources.tables import table_rows

    node_rows = table_rows(nodes, TABLE_SUFFIXES[nodes.suffix])
    edge_rows = table_rows(edges, TABLE_SUFFIXES[edges.suffix])
    if not node_rows or not edge_rows:
        raise UserError(f"{nodes if not node_rows else edges}: no rows")
    fields = [k for k in node_rows[0] if not k.startswith("_")]
    if target not in fields:
        raise UserError(f"--target: no field '{target}' in {nodes} (fields: {', '.join(fields)})")
    node_id = next((f for f in ("id", "node", "node_id", "name") if f in fields), fields[0])
    split = next((f for f in fields if f.lower() == "split"), None)
    rest = [f for f in fields if f not in (node_id, target, split)]
    field = input_field or ("features" if "features" in rest else rest[0] if len(rest) == 1 else rest)
    if not field:
        raise UserError(f"{nodes}: no feature field besides {node_id} and {target}; name one with --input")
    labelled = [r for r in node_rows if r.get(target) not in (None, "")]
    training = ([r for r in labelled if str(r.get(split, "")).lower() == "train"] if split else labelled)
    count = len(training) if split else int(0.8 * len(labelled))
    ends = [k for k in edge_rows[0] if not k.startswith("_")][:2]
    name = out or Path(f"{nodes.parent.name or 'graph'}.yaml")
    lines = [f"# attntrain fit {name}      (written by: attntrain init {nodes.parent if out is None else nodes} "
             f"--target {target}" + (f" --out {out})" if out else ")"),
             f"# a graph: {len(node_rows):,} nodes from {nodes.name}, {len(edge_rows):,} edges from {edges.name}, "
             f"{count:,} labelled nodes to train on; each node is a vector, attention runs along edges.",
             "# edit freely; `attntrain validate` checks it. Node fields seen: " + ", ".join(fields),
             "data:",
             f"  source: {_yaml_value({'format': 'graph', 'files': {'nodes': str(nodes), 'edges': str(edges)}})}",
             f"  input: {{field: {_yaml_value(field)}, kind: graph}}   # numbers: one field as a list or space-separated, or several fields",
             f"  target: {{field: {target}}}",
             f"  split: {{column: {split}}}" if split else
             "  split: {dev: 0.1, test: 0.1, seed: 0}   # a seeded split of the labelled nodes, saved with the run",
             f"  graph: {{node_id: {node_id}, edge_fields: {_yaml_value(ends)}, undirected: true, normalize: rows}}",
             "  graph_mask: edges      # none: every node attends to every node (full self-attention)"]
    return "\n".join(lines + graph_model(count)) + "\n"


def graph_model(count: int) -> list[str]:
    dropout = 0.6 if count < 1000 else 0.3  # few labelled nodes overfit fast (Cora: 140, dropout 0.6)
    return ["model:",
            f"  embed: {{dropout: {dropout}}}",
            f"  encoder: {{kind: gat, num_layers: 2, width: 64, num_heads: 8, output_heads: 1, dropout: {dropout},",
            f"            attention: {{normalize: softmax, dropout: {dropout}}}}}     # {count:,} training nodes; "
            "or kind: transformer with graph_mask: edges",
            "  head: {kind: tagging, dropout: 0.0}     # a label per node",
            "train:",
            "  optimizer: adam",
            "  lr: 0.01",
            "  weight_decay: 0.0005",
            "  grad_clip: null",
            "  warmup_steps: 0",
            "  schedule: constant",
            "  max_epochs: 1000       # one step is one pass over the whole graph: 1,000 updates",
            "  eval_every: 2",
            "  save_every: 1000",
            "  metric: loss           # dev accuracy on a few hundred nodes ties often; dev loss keeps improving",
            "  metric_mode: min",
            "  patience: 50           # 50 evaluations (100 steps) without a better dev loss"]
