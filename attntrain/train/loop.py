"""Device, precision, optimizer, schedule and evaluation: the pieces the training loop is made of."""

from __future__ import annotations

import contextlib
import math
import resource
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from attntrain.errors import UserError
from attntrain.io import atomic_write_json
from attntrain.train import distributed


def resolve_device(name: str) -> torch.device:
    """train.device -> a torch device (several processes: see distributed.device_for first)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: '{name}' requested but CUDA is not available (use auto or cpu)")
    return device


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """Mixed precision only on CUDA: on this CPU kind bf16/fp16 matmuls are ~10x slower than fp32."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW (or Adam with L2); no weight decay on biases, norms and embedding tables. train.freeze: those
    parameters stay out; train.layer_decay: a group per depth, its `lr_scale` applied by the trainer."""
    from attntrain.train.param_groups import block_of, freeze, lr_scale

    freeze(model, cfg.freeze)
    tables = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)}
    num_layers = max((block_of(name) for name, _ in model.named_parameters() if block_of(name) is not None),
                     default=-1) + 1
    parts: dict[tuple[float, bool], list] = {}  # (lr scale, decayed) -> parameters
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = lr_scale(name, num_layers, cfg.layer_decay)
            parts.setdefault((scale, not (p.dim() < 2 or id(p) in tables)), []).append(p)
    groups = [{"params": parts.get((scale, decayed), []), "weight_decay": cfg.weight_decay if decayed else 0.0,
               "lr_scale": scale}  # without layer_decay: [decayed, not decayed], as checkpoints before it hold
              for scale in sorted({s for s, _ in parts} or {1.0}, reverse=True) for decayed in (True, False)]
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    # Adam adds weight_decay * w to the gradient (L2), so rarely-updated weights shrink fast: the
    # regulariser GCN/GAT were tuned with. AdamW decays every weight by lr * weight_decay per step.
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def lr_factor(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine / linear decay to min_ratio at `total` (or constant)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def move(batch: dict, device: torch.device) -> dict:
    """Tensors to the device; on CUDA through pinned memory, so the copy does not stall the host."""
    pin = device.type == "cuda"
    return {k: (v.pin_memory() if pin and v.device.type == "cpu" else v).to(device, non_blocking=True)
            if torch.is_tensor(v) else v for k, v in batch.items()}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def evaluate(model, task, split: str, device: torch.device, *, amp=None, progress: bool = False) -> dict:
    """The head's metrics (and mean loss) over a whole split, in length-sorted batches."""
    return distributed.compute_on_main(evaluate_meter(model, task, split, device, amp=amp, progress=progress))


def split_outputs(model, task, split: str, device: torch.device, *, amp=None, progress: bool = False):
    """(model output, batch) for each of this process's batches of a whole split, in eval mode and without
    gradients (with several processes each runs every N-th batch); the model's mode is restored at the end."""
    was_training = model.training
    model.eval()
    batches = distributed.shard(task.batches(split, shuffle=False))
    try:
        for indices in tqdm(batches, desc=f"eval {split}", leave=False,
                            disable=not progress or not distributed.is_main(), dynamic_ncols=True):
            batch = move(task.batch(split, indices), device)
            with torch.no_grad(), autocast(device, amp):
                out = model(batch)
            yield out, batch
    finally:
        model.train(was_training)


def evaluate_meter(model, task, split: str, device: torch.device, *, amp=None, progress: bool = False):
    """Run a whole split through the model; returns the head's filled meter (metrics, confusion, ...).

    With several processes each runs every N-th batch and the meters' counts are summed (exact metrics).
    """
    meter = model.head.new_meter()
    for out, batch in split_outputs(model, task, split, device, amp=amp, progress=progress):
        meter.update(out["logits"], batch, out.get("loss"))
    distributed.sync_meter(meter)
    return meter


OUTSIDE_BIASES = (1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0)  # model.head.outside_bias: dev tries these


def choose_outside_bias(model, task, device: torch.device, metric: str, *, amp=None) -> tuple[float, dict]:
    """The O-tag bias of a span tagger with the best dev `metric` (ties: the one nearest 0), and every bias's
    dev figure. One pass over dev; each bias decodes the same scores. Leaves the head set to the choice."""
    head = model.head
    kept = [(out["logits"].float(), {key: batch[key] for key in ("labels", "mask", "oov") if key in batch})
            for out, batch in split_outputs(model, task, "dev", device, amp=amp)]
    scores = {}
    for bias in OUTSIDE_BIASES:
        head.set_outside_bias(bias)
        meter = head.new_meter()
        for logits, batch in kept:
            meter.update(logits, batch)
        distributed.sync_meter(meter)
        metrics = distributed.compute_on_main(meter)
        scores[bias] = metrics[metric if metric in metrics else "f1"]
    best = max(scores, key=lambda bias: (scores[bias], -abs(bias)))
    head.set_outside_bias(best)
    return best, scores


def evaluate_split(model, task, split: str, device: torch.device, run_dir, *, amp=None,
                   progress: bool = False) -> dict:
    """The metrics of a whole split; what the meter holds beyond them goes into run_dir (see save_artifacts)."""
    meter = evaluate_meter(model, task, split, device, amp=amp, progress=progress)
    metrics = distributed.compute_on_main(meter)
    if distributed.is_main():
        save_artifacts(run_dir, split, meter, task.info())
    return metrics


def save_artifacts(run_dir, split: str, meter, info: dict) -> None:
    """Write what a meter holds beyond scalar metrics: the confusion counts as JSON (`plots` draws them)."""
    confusion = getattr(meter, "confusion", None)
    if confusion is None:
        return
    labels = info.get("labels") or [str(i) for i in range(confusion.shape[0])]
    atomic_write_json(Path(run_dir) / f"confusion_{split}.json", {"labels": labels, "matrix": confusion.tolist(),
                                                                   "rows": "true label", "columns": "predicted"})
