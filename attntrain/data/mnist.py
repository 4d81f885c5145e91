"""Images as sequences (whole-sequence label over patches): MNIST digits from the original IDX files.

An image is cut into non-overlapping `data.patch` x `data.patch` patches, one vector per patch
(7 -> 16 vectors of 49 pixels; 1 -> 784 vectors of one pixel). Patching happens in the model's
ImageEmbed, so the data holds normalised images (B,H,W). `data.dev_size` training images are held
out as dev (the official test set is only evaluated once at the end).
"""

from __future__ import annotations

import torch

from attntrain.data.classify import ClassifyTask, holdout
from attntrain.data.images import grid_shape, read_idx, read_image
from attntrain.data.root import dataset_dir
from attntrain.errors import UserError

MEAN, STD = 0.1307, 0.3081  # MNIST training pixel statistics (of x / 255)
FILES = {"train": "train", "test": "t10k"}


class MnistTask(ClassifyTask):
    input = "image"
    predict_batch_size = 64

    def __init__(self, cfg):
        super().__init__(cfg)
        self.set_classes([str(d) for d in range(10)])
        self._arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.grid = grid_shape(28, 28, cfg.data.patch)

    def _load(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self._arrays:
            folder = dataset_dir(self.cfg.data.root, self.cfg.data.dataset)
            images = read_idx(folder / f"{name}-images-idx3-ubyte.gz")
            labels = read_idx(folder / f"{name}-labels-idx1-ubyte.gz")
            if images.ndim != 3 or labels.shape != images.shape[:1]:
                raise UserError(f"mnist: {folder}/{name}-*: {tuple(images.shape)} images vs "
                                f"{tuple(labels.shape)} labels")
            self._arrays[name] = (images, labels.long())
        return self._arrays[name]

    def read_split(self, split: str) -> list[dict]:
        images, labels = self._load(FILES.get(split, "train"))
        if split == "test":
            index = range(len(images))
        else:
            train, dev = holdout(len(images), self.cfg.data.dev_size)
            index = train if split == "train" else dev
        return [{"image": images[i], "label": str(int(labels[i]))} for i in index]

    def prepare(self, state: dict | None = None) -> None:
        pass

    def state(self) -> dict:
        return {"classes": self.classes}

    def info(self) -> dict:
        return {"input": "image", "patch": self.cfg.data.patch, "grid": list(self.grid), **super().info()}

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        image = (example["image"].float() / 255.0 - MEAN) / STD  # (H,W)
        return self.with_label({"length": self.grid[0] * self.grid[1], "images": image}, example)

    def collate(self, items: list[dict]) -> dict:
        B = len(items)
        batch = {"images": torch.stack([it["images"] for it in items]),  # (B,H,W)
                 "mask": torch.ones(B, items[0]["length"], dtype=torch.bool)}
        return self.collate_labels(batch, items)

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        """An image file (PNG, ...) or an index into the test set."""
        examples = []
        for line in lines:
            text = line.strip()
            if not text:
                examples.append({"image": None, "source": ""})
            elif text.isdigit():
                images, labels = self._load("t10k")
                if int(text) >= len(images):
                    raise UserError(f"predict: test index {text} out of range 0..{len(images) - 1}")
                examples.append({"image": images[int(text)], "source": f"test[{text}] (true {int(labels[int(text)])})"})
            else:
                pixels = read_image(text, (28, 28))  # (H,W) in [0,1]
                examples.append({"image": (pixels * 255).round().to(torch.uint8), "source": text})
        return examples

    def is_empty(self, example: dict) -> bool:
        return example["image"] is None

    def position_labels(self, example: dict, item: dict) -> list[str]:
        rows, cols = self.grid
        return [f"r{r}c{c}" for r in range(rows) for c in range(cols)]

    def describe(self, example: dict, prediction) -> str:
        return f"{example['source']}\t{super().describe(example, prediction)}"
