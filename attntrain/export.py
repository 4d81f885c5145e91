"""`attntrain export RUN --format onnx|torchscript`: Embed -> Encoder -> Head as one graph on plain tensors.

The exported graph takes the tensors of a collated batch (for text: words (B,T), chars (B,T,C),
mask (B,T)) in the order `input_names` lists them and returns logits: (B,T,L) for a tagging head,
(B,L) for a sequence head. Batch and length axes are dynamic.

seq2seq runs are refused: their output comes from a search loop (greedy / beam) over a decoder whose
key/value cache grows by one position per step and whose rotary / sinusoidal offsets are Python
integers; exporting a step with the cache as inputs/outputs needs those made tensors first.
Traced with a batch that holds padding, so the padding-mask branch of attention is the one recorded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from attntrain.errors import UserError

FORMATS = ("onnx", "torchscript")
NOT_INPUTS = ("labels", "oov", "target_in", "references", "indices", "split")


class LogitsModel(nn.Module):
    """model(batch)["logits"] over positional tensors: forward(*tensors in `names` order) -> logits."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.names, tensors))
        return self.model.head(self.model.features(batch), batch)


def sample_batch(task, examples: list[dict]) -> dict[str, torch.Tensor]:
    """The model inputs of a collated batch of real examples (labels and bookkeeping left out)."""
    items = [task.encode(ex, max_len=task.eval_max_len()) for ex in examples]
    batch = task.collate(items)
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in NOT_INPUTS}


def dynamic_axes(batch: dict[str, torch.Tensor], input_kind: str, head: str) -> dict[str, dict[int, str]]:
    axes = {}
    for name, tensor in batch.items():
        if input_kind == "image" and name != "mask":  # images are a fixed size; only the batch varies
            axes[name] = {0: "batch"}
        else:
            # pieces of a pretrained tokenizer with tags per word: pieces and words are two lengths
            length = "pieces" if "word_starts" in batch and name in ("words", "piece_mask") else "length"
            axes[name] = {0: "batch", 1: length, **({2: "chars"} if tensor.dim() == 3 and name == "chars" else {})}
    axes["logits"] = {0: "batch", 1: "length"} if head == "tagging" else {0: "batch"}
    return axes


def export_examples(task, split: str = "dev", count: int = 4) -> list[dict]:
    """Real inputs of different lengths (so that the traced batch has padding) from a split of the task."""
    raw = task.split_raw(split)[:64]
    raw = [ex for ex in raw if not task.is_empty(ex)]
    if not raw:
        raise UserError(f"export: the {split} split has no examples to trace with")
    by_length = sorted(raw, key=lambda ex: task.encode(ex, max_len=task.eval_max_len())["length"])
    picks = [by_length[0], by_length[-1], *by_length[1:count - 1]]
    return picks[:count]


def check_exportable(task, cfg) -> None:
    """Refuse what cannot be traced, before any example is read (a graph has no per-input examples)."""
    head = cfg.model.head.kind
    if head not in ("tagging", "sequence"):
        raise UserError(f"export: only tagging and sequence heads are exported; this run's head is '{head}' "
                        "(seq2seq decodes in a search loop with a growing cache, see attntrain/export.py)")
    if task.input == "graph":
        raise UserError("export: graph runs are not exported (their attention follows an edge list)")
    if cfg.model.encoder.attention.window is not None:
        raise UserError("export: local attention (model.encoder.attention.window) is not exported: its mask "
                        "depends on the length in Python code")


def export_model(model: nn.Module, task, cfg, out: Path, fmt: str, examples: list[dict]) -> list[str]:
    """Write the model to `out`; returns the input names in order."""
    check_exportable(task, cfg)
    head = cfg.model.head.kind
    batch = sample_batch(task, examples)
    names = list(batch)
    wrapper = LogitsModel(model.eval(), names).eval()
    args = tuple(batch[n] for n in names)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The trace records the padded-batch branch of attention and positions up to the table size on
        # purpose (see the module docstring); the tracer's generic warnings about it are noise here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "onnx":
            torch.onnx.export(wrapper, args, str(out), input_names=names, output_names=["logits"],
                              dynamic_axes=dynamic_axes(batch, task.input, head), opset_version=17, dynamo=False)
        else:
            traced = torch.jit.trace(wrapper, args, check_trace=False)
            traced.save(str(out))
    return names


def export_run(run_dir: str | Path, *, fmt: str = "onnx", out: Optional[Path] = None, checkpoint: str = "best") -> str:
    """Export a run's model; returns a one-line summary naming the file and its inputs."""
    from attntrain.runs import load_run

    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  torch.onnx writes through it
        except ImportError:
            raise UserError("export --format onnx needs the optional dependencies: pip install 'attntrain[export]'")
    cfg, task, model, _ = load_run(run_dir, checkpoint=checkpoint, device="cpu")
    out = Path(out) if out is not None else Path(run_dir) / ("model.onnx" if fmt == "onnx" else "model.pt")
    check_exportable(task, cfg)
    split = "dev" if "dev" in task.splits else task.splits[0]
    names = export_model(model, task, cfg, out, fmt, export_examples(task, split))
    return f"wrote {out} (inputs: {', '.join(names)}; output: logits)"
