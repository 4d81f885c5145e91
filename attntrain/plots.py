"""Pictures of a run: learning curves from metrics.jsonl, attention maps of a trained model.

Figures are drawn with matplotlib's object API on the Agg canvas, never through pyplot: nothing
needs a display, no global backend is switched under a caller (a notebook keeps its own), and a
figure is freed like any object instead of living on in pyplot's registry.
Figure sizes are fixed in inches at DPI, so an image's pixel size follows from its layout alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attntrain.compare import read_metrics
from attntrain.config import read_yaml
from attntrain.errors import UserError
from attntrain.io import atomic_path
from attntrain.train.checkpoint import RunDir
from attntrain.train.loop import move
from attntrain.train.restore import load_run

DPI = 100
CURVES_SIZE = (10.0, 4.0)  # inches: two panels side by side -> 1000 x 400 pixels
PANEL_INCHES = 4.0  # one attention heatmap (grows for long sentences, see panel_inches)
COLORBAR_INCHES = 1.0  # extra width for the shared colorbar
TITLE_INCHES = 0.75  # extra height for the title
HEADS_PER_ROW = 4


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas; constrained layout fits labels without changing its size."""
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write atomically; the format comes from the suffix (png when there is none)."""
    fmt = path.suffix[1:].lower() or "png"
    if fmt not in figure.canvas.get_supported_filetypes():
        supported = ", ".join(sorted(figure.canvas.get_supported_filetypes()))
        raise UserError(f"{path}: cannot write a '.{fmt}' picture; use one of: {supported}")
    # The temporary file ends in .tmp, so the format must be named rather than guessed.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=DPI)
    return path


# ---------------------------------------------------------------------------------------------
# Learning curves


def learning_curves(run_dir: str | Path, out: Optional[Path] = None) -> Path:
    """Plot train loss and the dev metric (train.metric) against the step; writes learning_curves.png."""
    run = RunDir(run_dir).require()
    records = read_metrics(run.metrics)
    if not records:
        raise UserError(f"{run.metrics}: no records to plot yet")
    config = read_yaml(run.config)
    metric = config.get("train", {}).get("metric", "accuracy")
    # A window of skipped (non-finite) steps logs loss null: it is a gap in the curve.
    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    dev = [r for r in records if r.get("kind") == "eval" and r.get("split") == "dev" and r.get(metric) is not None]

    figure = new_figure(CURVES_SIZE)
    loss_axes, metric_axes = figure.subplots(1, 2)
    loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], marker=".", color="tab:blue")
    loss_axes.set(xlabel="step", ylabel="train loss", title="training loss")
    metric_axes.plot([r["step"] for r in dev], [r[metric] for r in dev], marker="o", color="tab:orange")
    metric_axes.set(xlabel="step", ylabel=f"dev {metric}", title=f"dev {metric}")
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
    figure.suptitle(f"{run.path.name}: learning curves")
    return save_figure(figure, Path(out) if out is not None else run.path / "learning_curves.png")


def confusion_matrix(matrix: torch.Tensor, labels: list[str], out: Path, *, title: str = "") -> Path:
    """Counts (L,L), rows = true label, columns = predicted, coloured by the share of each row."""
    counts = matrix.double()
    share = counts / counts.sum(1, keepdim=True).clamp(min=1)
    side = min(max(4.0, 0.45 * len(labels) + 2.0), 12.0)
    figure = new_figure((side + 1.0, side))
    axes = figure.subplots()
    image = axes.imshow(share.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    positions = range(len(labels))
    axes.set_xticks(positions, labels=labels, rotation=90 if max(map(len, labels)) > 3 else 0)
    axes.set_yticks(positions, labels=labels)
    if len(labels) <= 20:
        for i in positions:
            for j in positions:
                axes.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                          color="white" if share[i, j] > 0.5 else "black")
    accuracy = 100.0 * float(counts.diagonal().sum() / counts.sum().clamp(min=1))
    axes.set(xlabel="predicted", ylabel="true", title=f"{title}  (accuracy {accuracy:.2f}%)")
    figure.colorbar(image, ax=axes, label="share of the true class")
    return save_figure(figure, out)


def confusion_pictures(run_dir: str | Path, splits: Optional[list[str]] = None) -> list[Path]:
    """confusion_<split>.png beside each confusion_<split>.json the evaluation wrote (counts, rows = true);
    every split that has counts, or only `splits`."""
    run_dir = Path(run_dir)
    sources = sorted(run_dir.glob("confusion_*.json")) if splits is None else \
        [run_dir / f"confusion_{split}.json" for split in splits if (run_dir / f"confusion_{split}.json").is_file()]
    drawn = []
    for source in sources:
        record = json.loads(source.read_text())
        split = source.stem.removeprefix("confusion_")
        drawn.append(confusion_matrix(torch.tensor(record["matrix"]), record["labels"], source.with_suffix(".png"),
                                      title=f"{run_dir.name}: {split}"))
    return drawn


# ---------------------------------------------------------------------------------------------
# Attention maps


@torch.no_grad()
def attention_weights(model, task, text: str,
                      device: torch.device | str = "cpu") -> tuple[list[str], list[torch.Tensor]]:
    """Position labels of the input and the attention weights of every layer, each (H,T,T) (query x key).

    `text` is the natural input of the task (a sentence, a .wav path, an image path or test index).
    Recomputes the encoder's forward pass block by block from its public parts, asking each
    block's attention for its weight matrix (the explicit path) before running the block.
    """
    if task.input not in ("text", "audio", "image"):
        raise UserError(f"attention maps are drawn over a sentence, audio frames or image patches; this run's "
                        f"task has '{task.input}' input")
    encoder = model.encoder
    if not all(hasattr(encoder, part) for part in ("blocks", "position", "attention_mask")):
        raise UserError("attention maps need model.encoder.kind: transformer; this run's encoder "
                        f"({type(encoder).__name__}) has no attention layers")
    example = task.parse_inputs([text])[0]
    if task.is_empty(example):
        raise UserError("attention map: the input is empty")
    model.eval()
    device = torch.device(device)
    item = task.encode(example, max_len=task.eval_max_len())
    batch = move(task.collate([item]), device)
    x, mask = model.head.prefix(*model.embed(batch))  # (1,T,D), (1,T); a [CLS] vector may come first
    labels = task.position_labels(example, item)
    labels = ["[CLS]"] * (x.shape[1] - len(labels)) + labels
    full_mask = encoder.attention_mask(mask, None)
    x = encoder.position(x)
    layers = []
    for block in encoder.blocks:
        layers.append(block.attention.weights(block.attention_input(x), full_mask)[0].float().cpu())  # (H,T,T)
        x = block(x, full_mask)
    return labels, layers


def grid_shape(panels: int) -> tuple[int, int]:
    """(rows, columns) of the heatmap grid: up to HEADS_PER_ROW panels per row."""
    columns = min(panels, HEADS_PER_ROW)
    return math.ceil(panels / columns), columns


def panel_inches(tokens: int) -> float:
    """Side of one heatmap: fixed up to 20 positions, then 0.2 in per position (in 0.5 in steps), at most 12 in."""
    return min(max(PANEL_INCHES, math.ceil(tokens * 0.2 * 2) / 2), 12.0)


def attention_figure_size(panels: int, tokens: int) -> tuple[float, float]:
    """Figure size in inches for `panels` heatmaps of `tokens` x `tokens`."""
    rows, columns = grid_shape(panels)
    side = panel_inches(tokens)
    return columns * side + COLORBAR_INCHES, rows * side + TITLE_INCHES


def check_index(value: int, count: int, what: str) -> None:
    if not 0 <= value < count:
        raise UserError(f"--{what} {value}: this model has {count} {what}s; valid: 0..{count - 1}")


def draw_heatmap(axes, weights: torch.Tensor, tokens: list[str], vmax: float, title: str):
    """One (T,T) heatmap with the position labels on both axes; returns the image for the colorbar.

    Long inputs (audio frames) label every k-th position so the labels stay readable.
    """
    image = axes.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=vmax)
    every = max(1, math.ceil(len(tokens) / 40))
    positions = range(0, len(tokens), every)
    shown = [tokens[i] for i in positions]
    size = 8 if len(tokens) <= 30 else 6
    axes.set_xticks(positions, labels=shown, rotation=90, fontsize=size)
    axes.set_yticks(positions, labels=shown, fontsize=size)
    axes.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
    return image


def attention_map(run_dir: str | Path, text: str, *, layer: int = 0, head: Optional[int] = None,
                  out: Optional[Path] = None, checkpoint: str = "best") -> Path:
    """Heatmap of the attention weights of one layer for `text`: one head, or all heads in a grid.

    Writes `<run_dir>/attention_layer<L>[_head<H>].png` unless `out` is given; returns the path.
    """
    _, task, model, device = load_run(run_dir, checkpoint=checkpoint)
    tokens, layers = attention_weights(model, task, text, device)
    check_index(layer, len(layers), "layer")
    weights = layers[layer]  # (H,T,T)
    heads = range(weights.shape[0]) if head is None else [head]
    if head is not None:
        check_index(head, weights.shape[0], "head")
    # One colour scale for every panel, so heads can be compared (ReLU weights need not reach 1).
    vmax = max(float(weights[list(heads)].max()), 1e-6)

    figure = new_figure(attention_figure_size(len(heads), len(tokens)))
    rows, columns = grid_shape(len(heads))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, index in zip(grid, heads):
        image = draw_heatmap(axes, weights[index], tokens, vmax, f"head {index}")
    for axes in grid[len(heads):]:
        axes.set_visible(False)
    figure.colorbar(image, ax=list(grid[: len(heads)]), label="attention weight")
    which = f"head {head}" if head is not None else f"all {len(heads)} heads"
    figure.suptitle(f"{Path(run_dir).name}: layer {layer}, {which}")
    default = f"attention_layer{layer}" + (f"_head{head}" if head is not None else "") + ".png"
    return save_figure(figure, Path(out) if out is not None else Path(run_dir) / default)
