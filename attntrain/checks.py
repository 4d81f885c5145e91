"""Checks of config values that name data or metrics, made before any data is read.

Pydantic checks keys, types, ranges and table choices; these check the choices that only make sense
against the data on disk or the chosen head (dataset folder, label, languages, dev metric), so
`attntrain validate` and `attntrain fit` refuse them at once instead of at the first evaluation.
"""

from __future__ import annotations

from pathlib import Path

from attntrain.choices import GRAPH_FORMATS, METRICS, TASK_LABELS
from attntrain.config import Config, load_config
from attntrain.errors import UserError
from attntrain.registry import suggest


def load_checked(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML config, then run every check below: what `validate` reports.

    Needs neither torch nor any data library, so `validate` and a `fit` with a bad config answer at once.
    """
    cfg = load_config(path, overrides)
    check_config(cfg, str(path))
    return cfg


def check_run_dir(path: str | Path, *, seeds: bool = False) -> Path:
    """A run directory holds config.yaml (`seeds`: or the summary.json of a multi-seed parent); checked before
    torch loads, so a mistyped path is answered at once."""
    path = Path(path)
    if (path / "config.yaml").is_file() or seeds and (path / "summary.json").is_file():
        return path
    what = "no config.yaml, nor summary.json of a multi-seed run" if seeds else "no config.yaml"
    raise UserError(f"{path} is not a run directory ({what})" if path.is_dir() else f"{path}: no such run directory")


def check_config(cfg, source: str = "config") -> None:
    """Raise a UserError naming the key for the first data-dependent value that cannot work."""
    check_metric(cfg, source)
    check_label(cfg, source)
    check_dataset(cfg, source)
    check_pretrain(cfg, source)
    check_graph(cfg, source)
    check_fields(cfg, source)


def check_fields(cfg, source: str = "config") -> None:
    """Every field name `data:` uses is a field of the data's first rows (own data; a preset's are known)."""
    from attntrain.data.sources.peek import graph_fields, source_fields

    data = cfg.data
    if data.source is None or data.source.format == "planetoid":  # Planetoid files have no field names
        return
    inputs = data.input.field if isinstance(data.input.field, list) else [data.input.field]
    used = [*(("data.input.field", name) for name in inputs), ("data.target.field", data.target.field)]
    if data.source.format == "graph":
        tables = graph_fields(data)
        wanted = {"nodes": [("data.graph.node_id", data.graph.node_id), *used],
                  "edges": [("data.graph.edge_fields", name) for name in data.graph.edge_fields]}
        if data.split.column:
            wanted["nodes"].append(("data.split.column", data.split.column))
        found = [(tables[role], wanted[role]) for role in wanted if role in tables]
    else:
        found = [((where, fields), used + ([("data.split.column", data.split.column)]
                                           if data.split.column and split == "all" else []))
                 for split, where, fields in source_fields(data)]
    for (where, fields), names in found:
        for key, name in names:
            if name not in fields:
                raise UserError(f"{source}: {key}: no field '{name}'{suggest(name, fields)} in {where} "
                                f"(its fields: {', '.join(fields)})")
    check_added_sources(cfg, source)


def check_added_sources(cfg, source: str = "config") -> None:
    """Each data.source.add_train source: its dataset folder and files exist, and its rows hold its input field."""
    from attntrain.data.sources.files import base_folder, file_groups
    from attntrain.data.sources.peek import source_fields
    from attntrain.data.tasks.added import rekeyed, source_key, source_view

    data = cfg.data
    if data.source.add_train and cfg.model.head.kind == "seq2seq":
        raise UserError(f"{source}: data.source.add_train: a seq2seq run reads its sentence pairs from data.source "
                        "alone; name more files in data.source.files.train instead")
    for index, extra in enumerate(data.source.add_train or []):
        key, field = source_key(index), extra.field or data.input.field
        try:
            view = source_view(data, index, extra)
            if extra.format != "hf":
                file_groups(extra, base_folder(view))
        except UserError as error:
            raise UserError(f"{source}: {rekeyed(str(error), key)}") from None
        for _, where, fields in source_fields(view):
            if field not in fields:
                raise UserError(f"{source}: {key}.field: no field '{field}'{suggest(field, fields)} in {where} "
                                f"(its fields: {', '.join(fields)})")


def check_pretrain(cfg, source: str = "config") -> None:
    """Pretraining objectives exist for text, audio and images; masked-word accuracy for text only."""
    if cfg.model.head.kind != "pretrain":
        return
    from attntrain.data.tasks.presets import expand_preset

    expanded = cfg.model_copy(deep=True)
    expand_preset(expanded)
    data = expanded.data
    kind = "graph" if data.task == "planetoid" or data.source is not None and data.source.format in GRAPH_FORMATS \
        else data.input.kind
    if kind not in ("text", "audio", "image"):
        raise UserError(f"{source}: model.head.kind: pretraining has objectives for text, audio and image inputs, "
                        f"not {kind}")
    if cfg.train.metric == "accuracy" and kind != "text":
        raise UserError(f"{source}: train.metric: accuracy (masked words) is reported for text only; "
                        f"{kind} pretraining reports loss")


def check_graph(cfg, source: str = "config") -> None:
    """A graph's nodes are its positions: each gets a label, so only the tagging head fits."""
    data = cfg.data
    graph = data.source.format in GRAPH_FORMATS if data.source is not None else data.task == "planetoid"
    if graph and cfg.model.head.kind != "tagging":
        raise UserError(f"{source}: model.head.kind: a graph run labels every node; use tagging "
                        f"(got '{cfg.model.head.kind}')")


def check_metric(cfg, source: str = "config") -> None:
    kind, metric = cfg.model.head.kind, cfg.train.metric
    known = METRICS.get(kind)
    if known is not None and metric not in known:
        raise UserError(f"{source}: train.metric: '{metric}'{suggest(metric, known)} is not reported by the "
                        f"{kind} head; choose one of {', '.join(known)}")
    if kind == "tagging" and metric in SPAN_METRICS and span_scheme(cfg) == "none":
        plain = [m for m in known if m not in SPAN_METRICS]
        raise UserError(f"{source}: train.metric: '{metric}' is an entity score, but these tags are not spans "
                        f"(data.target.scheme: none); choose one of {', '.join(plain)}")


SPAN_METRICS = ("f1", "precision", "recall")


def span_scheme(cfg) -> str:
    """data.target.scheme as the run will see it (a preset's scheme filled in); 'auto' until data is read."""
    from attntrain.data.tasks.presets import expand_preset

    expanded = cfg.model_copy(deep=True)
    expand_preset(expanded)
    return expanded.data.target.scheme


def check_label(cfg, source: str = "config") -> None:
    choices = TASK_LABELS.get(cfg.data.task)
    label = cfg.data.label
    if choices and label not in choices:
        raise UserError(f"{source}: data.label: '{label}'{suggest(label, choices)} is not a label of task "
                        f"{cfg.data.task}; choose one of {', '.join(choices)}")
    if not choices and label != "default":
        raise UserError(f"{source}: data.label: task {cfg.data.task} has a single label; "
                        f"remove data.label (got '{label}')")


def check_dataset(cfg, source: str = "config") -> None:
    from attntrain.data.sources.root import dataset_dir

    if not cfg.data.dataset:  # own data: file names are checked when the source is read
        return
    try:
        folder = dataset_dir(cfg.data.root, cfg.data.dataset)
    except UserError as e:
        raise UserError(f"{source}: data.dataset: {e}") from None
    if cfg.data.task == "translation":
        languages = cfg.data.translation
        if languages.source == languages.target:
            raise UserError(f"{source}: data.translation: source and target are both '{languages.source}'")
        found = sorted({p.name.split(".")[-2] for p in folder.glob("raw/*.gz") if p.name.count(".") >= 2})
        for key in ("source", "target"):
            lang = getattr(languages, key)
            if lang not in found:
                raise UserError(f"{source}: data.translation.{key}: no '*.{lang}.gz' files in {folder / 'raw'}"
                                f"{suggest(lang, found)}; languages there: {', '.join(found) or 'none'}")
