"""`attntrain init DATA --target FIELD`: inspect a user's data and write a commented starter config.

The output mode is guessed from the target's shape (a list of tags -> tagging; a short label ->
one label per input; running text -> seq2seq), the input kind from the files (wav -> audio, images
-> image, a node table with an edge table beside it -> graph, else text). The recipes use schedules that are fractions of the run, so they hold for
datasets of any size.
"""

from __future__ import annotations

from pathlib import Path

from attntrain.data.sources import MEDIA, SPLIT_ALIASES
from attntrain.errors import UserError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
                  ".conll": "conll", ".conllu": "conllu", ".bio": "conll", ".iob": "conll"}


def guess_format(data: Path) -> str:
    """The source format of a file or folder."""
    if data.is_dir():
        if (data / "dataset_dict.json").is_file() or (data / "dataset_info.json").is_file():
            return "hf"
        files = [p for p in data.rglob("*") if p.is_file()]
        for fmt, suffixes in MEDIA.items():
            if any(p.suffix.lower() in suffixes for p in files):
                return fmt
        if files and all(p.suffix == ".txt" for p in files):
            return "text"
        raise UserError(f"{data}: cannot tell the format of this folder (no audio, images, .txt classes or "
                        "saved Hugging Face dataset); write data.source by hand (README: Your own data)")
    suffix = "".join(data.suffixes[-2:]) if data.suffix == ".gz" else data.suffix
    fmt = TABLE_SUFFIXES.get(suffix.removesuffix(".gz"))
    if fmt is None:
        raise UserError(f"{data}: unknown file type '{data.suffix}'; known: {', '.join(TABLE_SUFFIXES)}")
    return fmt


def source_block(data: Path, fmt: str) -> dict:
    """files per split when the names say so (train/dev/test), else one path split by ratio."""
    if fmt in MEDIA or fmt == "hf" or fmt == "text":
        return {"format": fmt, "path": str(data)}
    siblings = {p.name.split(".")[0].lower(): p for p in data.parent.glob(f"*{data.suffix}")}
    files = {SPLIT_ALIASES[k]: str(p) for k, p in siblings.items() if k in SPLIT_ALIASES}
    if "train" in files and data.name.split(".")[0].lower() in SPLIT_ALIASES:
        return {"format": fmt, "files": files}
    return {"format": fmt, "path": str(data)}


EDGE_WORDS = ("edge", "link", "cite", "arc")  # a table whose name holds one of these lists a graph's edges
TABLES = ("csv", "tsv", "jsonl", "parquet")


def find_graph(data: Path) -> tuple[Path, Path] | None:
    """(node table, edge table) when DATA is a folder of two tables, or a table with an edge table beside it."""
    folder = data if data.is_dir() else data.parent
    tables = [p for p in sorted(folder.iterdir()) if p.is_file() and TABLE_SUFFIXES.get(p.suffix) in TABLES]
    edges = [p for p in tables if any(word in p.stem.lower() for word in EDGE_WORDS)]
    nodes = [p for p in tables if p not in edges]
    if data.is_file():
        return (data, edges[0]) if len(edges) == 1 and data not in edges else None
    return (nodes[0], edges[0]) if len(edges) == 1 and len(nodes) == 1 else None


def graph_config(nodes: Path, edges: Path, target: str, input_field: str | None) -> str:
    """A starter config for a node table + an edge table: node classification with graph attention."""
    from attntrain.data.sources import table_rows

    node_rows = table_rows(nodes, TABLE_SUFFIXES[nodes.suffix])[:500]
    edge_rows = table_rows(edges, TABLE_SUFFIXES[edges.suffix])[:1]
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
    ends = [k for k in edge_rows[0] if not k.startswith("_")][:2]
    lines = [f"# attntrain fit {nodes.parent.name or 'graph'}.yaml      (written by: attntrain init --target {target})",
             f"# a graph: nodes from {nodes.name}, edges from {edges.name}; each node is a vector, attention runs along edges.",
             "# edit freely; `attntrain validate` checks it. Node fields seen: " + ", ".join(fields),
             "data:",
             f"  source: {_yaml_value({'format': 'graph', 'files': {'nodes': str(nodes), 'edges': str(edges)}})}",
             f"  input: {{field: {_yaml_value(field)}, kind: graph}}   # numbers: one field as a list or space-separated, or several fields",
             f"  target: {{field: {target}}}",
             f"  split: {{column: {split}}}" if split else
             "  split: {dev: 0.1, test: 0.1, seed: 0}   # a seeded split of the labelled nodes, saved with the run",
             f"  graph: {{node_id: {node_id}, edge_fields: {_yaml_value(ends)}, undirected: true, normalize: rows}}",
             "  graph_mask: edges      # none: every node attends to every node (full self-attention)",
             GRAPH_MODEL]
    return "\n".join(lines)


GRAPH_MODEL = """model:
  embed: {dropout: 0.6}
  encoder: {kind: gat, num_layers: 2, width: 64, num_heads: 8, output_heads: 1, dropout: 0.6,
            attention: {normalize: softmax, dropout: 0.6}}     # or kind: transformer with graph_mask: edges
  head: {kind: tagging, dropout: 0.0}     # a label per node
train:
  optimizer: adam
  lr: 0.01
  weight_decay: 0.0005
  grad_clip: null
  warmup_steps: 0
  schedule: constant
  max_steps: 1000        # one step is one pass over the whole graph
  eval_every: 2
  save_every: 1000
  metric: loss
  metric_mode: min
  patience: 50           # evaluations without a better dev loss
"""


def sample_rows(source: dict, limit: int = 500) -> list[dict]:
    from attntrain.config import DataConfig
    from attntrain.data.sources import read_source

    data_cfg = DataConfig(source=source)
    rows = read_source(data_cfg)
    first = rows.get("train") or rows.get("all") or next(iter(rows.values()))
    return first[:limit]


def guess_mode(rows: list[dict], target: str) -> str:
    values = [r.get(target) for r in rows if r.get(target) is not None]
    if not values:
        names = ", ".join(k for k in rows[0] if not k.startswith("_")) if rows else "none"
        raise UserError(f"--target: no field '{target}' in the data (fields: {names})")
    if all(isinstance(v, (list, tuple)) for v in values):
        return "tagging"
    words = [len(str(v).split()) for v in values]
    if sum(words) / len(words) > 3 and len(set(map(str, values))) > 0.5 * len(values):
        return "seq2seq"
    return "sequence"


def guess_input(rows: list[dict], target: str, fmt: str) -> str:
    if fmt in MEDIA:
        return "path"
    candidates = [k for k in rows[0] if k != target and not k.startswith("_") and k.lower() != "split"]
    texts = [k for k in candidates if isinstance(rows[0][k], (str, list))]
    if not texts:
        raise UserError(f"no input field found besides '{target}'; name one with --input")
    return texts[0]


RECIPES = {
    "sequence": """model:
  embed: {{word_dim: 256, word_dropout: 0.1, ngram: 3, dropout: 0.3}}
  encoder: {{kind: transformer, num_layers: 2, width: 256, num_heads: 4, ffn_dim: 512, dropout: 0.3}}   # or cnn / rnn
  head: {{kind: sequence, pooling: mean, dropout: 0.3}}
train:
  lr: 5.0e-4
  weight_decay: 0.1
  max_epochs: {epochs}
  warmup: 0.05           # fractions of the run: the recipe holds for any dataset size
  eval_every: 0.1
  ema_horizon: 0.1       # evaluate and keep an average of the weights over the last ~10% of the steps
  metric: accuracy
""",
    "tagging": """model:
  embed: {{word_dim: 128, word_dropout: 0.2, char_dim: 48, char_filters: 128, ngram: 3, dropout: 0.3}}
  encoder: {{kind: transformer, num_layers: 2, width: 256, num_heads: 8, ffn_dim: 512, dropout: 0.3}}
  head: {{kind: tagging, crf: {crf}}}     # crf: a linear-chain CRF output layer (valid BIO spans)
train:
  lr: 1.0e-3
  max_epochs: {epochs}
  warmup: 0.05
  eval_every: 0.05
  ema_horizon: 0.1
  metric: {metric}
""",
    "seq2seq": """model:
  embed: {{dropout: 0.1}}
  encoder: {{kind: transformer, num_layers: 3, width: 256, num_heads: 4, ffn_dim: 512, dropout: 0.1}}
  head:
    kind: seq2seq
    label_smoothing: 0.1
    decoder: {{num_layers: 3, ffn_dim: 512, dropout: 0.1, tie_embeddings: all, beam_size: 5}}
train:
  lr: 1.0e-3
  max_epochs: {epochs}
  warmup: 0.1
  eval_every: 0.25
  metric: bleu
""",
}
MEDIA_MODEL = """model:
  embed: {{dropout: 0.1{position}}}
  encoder: {{kind: transformer, num_layers: {layers}, width: 128, num_heads: 4, ffn_dim: 256, dropout: 0.1}}
  head: {{kind: sequence, pooling: mean}}
train:
  lr: 1.0e-3
  max_epochs: {epochs}
  warmup: 0.05
  eval_every: 0.1
  ema_horizon: 0.1
  metric: accuracy
"""


def _yaml_value(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def starter_config(data: str | Path, target: str, input_field: str | None = None) -> str:
    """The text of a commented config for `data` predicting `target`."""
    data = Path(data)
    if not data.exists():
        raise UserError(f"{data}: no such file or folder")
    graph = find_graph(data)
    if graph is not None:
        return graph_config(*graph, target, input_field)
    fmt = guess_format(data)
    source = source_block(data, fmt)
    rows = sample_rows(source)
    if not rows:
        raise UserError(f"{data}: no rows found")
    mode = guess_mode(rows, target)
    field = input_field or guess_input(rows, target, fmt)
    kind = {"audiofolder": "audio", "imagefolder": "image"}.get(fmt, "text")
    lines = [f"# attntrain fit {data.stem}.yaml      (written by: attntrain init {data} --target {target})",
             f"# {fmt} data, {mode} ({'a label per token' if mode == 'tagging' else 'one label per input' if mode == 'sequence' else 'text in, text out'});",
             "# edit freely; `attntrain validate` checks it. Fields seen: "
             + ", ".join(k for k in rows[0] if not k.startswith("_")),
             "data:",
             f"  source: {_yaml_value(source)}",
             f"  input: {{field: {field}, kind: {kind}}}" + ("   # tokenizer: english | words | whitespace | bert"
                                                                 if kind == "text" else ""),
             f"  target: {{field: {target}}}"]
    if "files" not in source:
        lines.append("  split: {dev: 0.1, test: 0.1, seed: 0}   # a seeded split, saved with the run")
    if fmt == "imagefolder":
        from attntrain.data.images import read_image

        first = read_image(rows[0]["path"], (28, 28), channels=0)
        lines.append(f"  image: {{size: [28, 28], channels: {'gray' if first.shape[0] == 1 else 'rgb'}}}"
                     "   # resized; patch: side of a patch")
        lines.append("  patch: 7")
    if mode == "seq2seq":
        lines.append("  translation: {joint_vocab: true, vocab_size: 8000}")
    epochs = 20 if len(rows) < 500 else 10
    if kind == "audio":
        body = MEDIA_MODEL.format(epochs=epochs, layers=3, position="")
    elif kind == "image":
        body = MEDIA_MODEL.format(epochs=epochs, layers=4, position=", image_position: sinusoidal")
    else:
        tags = {t for r in rows for t in (r.get(target) or [])} if mode == "tagging" else set()
        spans = any(str(t).startswith(("B-", "I-")) for t in tags)
        body = RECIPES[mode].format(epochs=epochs, crf="true" if spans else "false", metric="f1" if spans else "accuracy")
    return "\n".join(lines) + "\n" + body
