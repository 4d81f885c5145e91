"""Run directory layout and crash-safe checkpoints.

runs/<name>/
    config.yaml          resolved config (everything needed to rebuild the model)
    task.json            vocabularies and other task state
    metrics.jsonl        one record per log step / evaluation
    best.safetensors     weights of the best dev checkpoint (metadata: step, metric)
    checkpoints/step-N/  model.safetensors + trainer.pt (optimizer, scheduler, RNG, data position)
    checkpoints/latest   name of the newest complete step-N folder
    eval_<split>.json    metrics of the best checkpoint (end of training, `attntrain eval`)
    confusion_<split>.json/.png   sequence labels: confusion matrix (rows true, columns predicted)

A checkpoint folder is written under a temporary name and renamed when complete; `latest` is
replaced atomically afterwards. A kill at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from attntrain.errors import UserError
from attntrain.io import atomic_path, atomic_write_text


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    task_state = property(lambda self: self.path / "task.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    best = property(lambda self: self.path / "best.safetensors")
    checkpoints = property(lambda self: self.path / "checkpoints")

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval_{split}.json"

    def require(self) -> "RunDir":
        if not self.config.is_file():
            raise UserError(f"{self.path} is not a run directory (no config.yaml)")
        return self

    def latest(self) -> Path | None:
        pointer = self.checkpoints / "latest"
        if not pointer.is_file():
            return None
        folder = self.checkpoints / pointer.read_text().strip()
        return folder if (folder / "trainer.pt").is_file() else None


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone tied tensors and move to CPU.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file(_state_dict(model), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    device = next(model.parameters()).device
    saved = load_file(str(path), device=str(device))
    own = model.state_dict()
    for key, tensor in own.items():  # name the first tensor that does not fit (a changed model.* setting)
        if key not in saved or saved[key].shape != tensor.shape:
            found = f"has shape {tuple(saved[key].shape)}" if key in saved else "is missing"
            raise UserError(f"{path} does not fit this model: {key} {found} there, {tuple(tensor.shape)} here; "
                            "was a model.* or data setting changed since it was saved?")
    unexpected = sorted(set(saved) - set(own))
    if unexpected:
        raise UserError(f"{path} does not fit this model: it holds {unexpected[0]}, which this model lacks; "
                        "was a model.* setting changed since it was saved?")
    model.load_state_dict(saved)


def save_checkpoint(run: RunDir, model: torch.nn.Module, trainer_state: dict, *, keep: int = 1) -> Path:
    """Write checkpoints/step-N atomically, point `latest` at it, drop older ones beyond `keep`."""
    name = f"step-{trainer_state['progress']['step']:08d}"
    final = run.checkpoints / name
    tmp = run.checkpoints / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state_dict(model), str(tmp / "model.safetensors"))
    torch.save(trainer_state, tmp / "trainer.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_text(run.checkpoints / "latest", name + "\n")
    old = sorted(p for p in run.checkpoints.glob("step-*") if p.is_dir() and p != final)
    for p in old[: max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, model: torch.nn.Module) -> dict:
    load_weights(model, folder / "model.safetensors")
    return torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)

