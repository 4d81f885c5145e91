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

Every read of a run file goes through `reading`: a truncated, foreign or mismatched file becomes one
UserError naming the file and what to do, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from attntrain.errors import UserError
from attntrain.io import atomic_path, atomic_write_text, read_text, writing

# What a damaged or foreign file raises while it is decoded or matched against the model.
LOAD_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, RuntimeError, AttributeError,
               pickle.UnpicklingError, SafetensorError)
RETRAIN = "train again with `attntrain fit CONFIG --overwrite`"


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def reading(path: str | Path, problem: str, hint: str = RETRAIN) -> Iterator[None]:
    """Turn an error raised while reading `path` into `path: problem (reason); hint`."""
    try:
        yield
    except UserError:
        raise
    except LOAD_ERRORS as e:
        raise UserError(f"{path}: {problem} ({_reason(e)}); {hint}") from None


def read_run_json(path: Path, hint: str = RETRAIN) -> dict:
    """A JSON object written into a run directory (task.json, eval_<split>.json)."""
    if not path.is_file():
        raise UserError(f"{path}: missing; {hint}")
    with reading(path, "not a readable JSON file", hint):
        value = json.loads(read_text(path))
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    task_state = property(lambda self: self.path / "task.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    best = property(lambda self: self.path / "best.safetensors")
    checkpoints = property(lambda self: self.path / "checkpoints")
    decoding = property(lambda self: self.path / "decoding.json")  # settings chosen on dev after training

    def decoding_settings(self) -> dict:
        """What `model.head.outside_bias: dev` chose; empty before the run's final evaluation."""
        return read_run_json(self.decoding) if self.decoding.is_file() else {}

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval_{split}.json"

    def require(self) -> "RunDir":
        from attntrain.checks import check_run_dir

        check_run_dir(self.path)
        return self

    def latest(self) -> Path | None:
        pointer = self.checkpoints / "latest"
        if not pointer.is_file():
            return None
        folder = self.checkpoints / pointer.read_text(errors="replace").strip()
        return folder if (folder / "trainer.pt").is_file() else None


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone tied tensors and move to CPU.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file(_state_dict(model), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_weights(model: torch.nn.Module, path: Path, hint: str = RETRAIN) -> None:
    """Weights from a safetensors file; damage or a model that no longer matches is a UserError."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    device = next(model.parameters()).device
    with reading(path, "not a readable safetensors file (truncated or damaged)", hint):
        saved = load_file(str(path), device=str(device))
    own = model.state_dict()
    for key, tensor in own.items():  # name the first tensor that does not fit (a changed model.* setting)
        if key not in saved or saved[key].shape != tensor.shape:
            found = f"has shape {tuple(saved[key].shape)}" if key in saved else "is missing"
            raise UserError(f"{path}: these weights do not fit the model built from config.yaml: {key} {found} there, "
                            f"{tuple(tensor.shape)} here (was a model.* or data setting changed?); restore the "
                            f"run's config.yaml, or {hint}")
    unexpected = sorted(set(saved) - set(own))
    if unexpected:
        raise UserError(f"{path}: these weights do not fit the model built from config.yaml: they hold "
                        f"{unexpected[0]}, which this model lacks (was a model.* setting changed?); restore the "
                        f"run's config.yaml, or {hint}")
    with reading(path, "these weights do not fit the model built from config.yaml (was the config edited?)",
                 "restore the run's config.yaml, or " + hint):
        model.load_state_dict(saved)


def save_checkpoint(run: RunDir, model: torch.nn.Module, trainer_state: dict, *, keep: int = 1) -> Path:
    """Write checkpoints/step-N atomically, point `latest` at it, drop older ones beyond `keep`."""
    name = f"step-{trainer_state['progress']['step']:08d}"
    final = run.checkpoints / name
    tmp = run.checkpoints / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with writing(final / "model.safetensors"):
        save_file(_state_dict(model), str(tmp / "model.safetensors"))
    with writing(final / "trainer.pt"):
        torch.save(trainer_state, tmp / "trainer.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_text(run.checkpoints / "latest", name + "\n")
    old = sorted(p for p in run.checkpoints.glob("step-*") if p.is_dir() and p != final)
    for p in old[: max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def resume_hint(folder: Path) -> str:
    """What to do when checkpoints/step-N (`folder`) cannot be resumed."""
    return (f"this checkpoint cannot be resumed; evaluate the best weights with `attntrain eval {folder.parent.parent}`, "
            "or " + RETRAIN)


def load_checkpoint(folder: Path, model: torch.nn.Module) -> dict:
    load_weights(model, folder / "model.safetensors", resume_hint(folder))
    path = folder / "trainer.pt"
    with reading(path, "not a readable trainer state", resume_hint(folder)):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"optimizer", "progress", "rng"} <= state.keys():
            raise ValueError("not a trainer state: expected optimizer, progress and rng")
    return state

