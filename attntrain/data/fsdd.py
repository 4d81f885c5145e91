"""Spoken digits and speakers (whole-sequence label over audio frames): Free Spoken Digit Dataset.

Each wav becomes a sequence of frame vectors (`data.audio`: window_ms / hop_ms framing, raw samples,
log-mel or MFCC features). The standard split puts recording index 0-4 in test; index 5-9 is held
out as dev and 10-49 trains. Per-feature mean and standard deviation come from the training split
only and are saved with the task state in the run directory, so `predict` normalises the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attntrain.data.audio import FrameFeatures, parse_fsdd_name, read_wav
from attntrain.data.batching import length_mask, pad_stack
from attntrain.data.classify import ClassifyTask
from attntrain.data.root import dataset_dir
from attntrain.errors import UserError

SPLIT_INDEX = {"test": range(0, 5), "dev": range(5, 10), "train": range(10, 50)}
DIGITS = [str(d) for d in range(10)]


class FsddTask(ClassifyTask):
    input = "audio"
    labels_to_predict = ("digit", "speaker")
    predict_batch_size = 16

    def __init__(self, cfg):
        super().__init__(cfg)
        audio = cfg.data.audio
        self.features = FrameFeatures(audio.features, sample_rate=audio.sample_rate, window_ms=audio.window_ms,
                                      hop_ms=audio.hop_ms, n_mels=audio.n_mels, n_mfcc=audio.n_mfcc)
        self.mean = self.std = None
        self._train_frames: dict[str, torch.Tensor] = {}  # training features computed by prepare()

    def _files(self) -> list[Path]:
        folder = dataset_dir(self.cfg.data.root, self.cfg.data.dataset) / "recordings"
        files = sorted(folder.glob("*.wav"))
        if not files:
            raise UserError(f"fsdd: no .wav files in {folder}")
        return files

    def read_split(self, split: str) -> list[dict]:
        examples = []
        for path in self._files():
            digit, speaker, index = parse_fsdd_name(path)
            if index in SPLIT_INDEX[split]:
                label = str(digit) if self.cfg.data.label == "digit" else speaker
                examples.append({"path": str(path), "label": label})
        return examples

    def frames(self, path: str) -> torch.Tensor:
        return self.features(read_wav(path, self.cfg.data.audio.sample_rate))  # (T,F)

    def prepare(self, state: dict | None = None) -> None:
        if state is not None:
            self.set_classes(state["classes"])
            self.mean, self.std = torch.tensor(state["mean"]), torch.tensor(state["std"])
            return
        everything = self.read_split("train")
        train = self.split_raw("train")
        if self.cfg.data.label == "digit":
            self.set_classes(DIGITS)
        else:
            self.set_classes(sorted({ex["label"] for ex in everything}))
        self._train_frames = {ex["path"]: self.frames(ex["path"]) for ex in train}  # reused by encode
        frames = torch.cat(list(self._train_frames.values()))  # (sum T, F)
        self.mean, self.std = frames.mean(0), frames.std(0).clamp(min=1e-5)

    def state(self) -> dict:
        return {"classes": self.classes, "mean": self.mean.tolist(), "std": self.std.tolist()}

    def info(self) -> dict:
        return {"input": "audio", "num_features": self.features.dim, **super().info()}

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        cached = self._train_frames.pop(example["path"], None)
        x = ((self.frames(example["path"]) if cached is None else cached) - self.mean) / self.std
        x = x[:max_len] if max_len else x
        return self.with_label({"length": x.shape[0], "features": x}, example)

    def collate(self, items: list[dict]) -> dict:
        batch = {
            "features": pad_stack([it["features"] for it in items]),  # (B,T,F)
            "mask": length_mask([it["length"] for it in items]),
        }
        return self.collate_labels(batch, items)

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        return [{"path": line.strip() or None, "label": None} for line in lines]

    def is_empty(self, example: dict) -> bool:
        return example["path"] is None

    def position_labels(self, example: dict, item: dict) -> list[str]:
        hop = self.cfg.data.audio.hop_ms / 1000
        return [f"{i * hop:.2f}s" for i in range(item["length"])]

    def describe(self, example: dict, prediction) -> str:
        return f"{example['path']}\t{super().describe(example, prediction)}"
