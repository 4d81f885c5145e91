"""Graph input: node classification on a Planetoid-style graph (Cora), one vector per node.

The whole graph is one example (B = 1, T = number of nodes). Every split sees all nodes and edges
(transductive learning); only the labels of the split's own nodes are kept, the rest are ignored
by the loss and the metrics. Attention is restricted to edges (+ self loops) unless
`data.graph_mask: none`, which lets every node attend to every node.
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from attntrain.data.root import dataset_dir
from attntrain.data.task import Task
from attntrain.errors import UserError
from attntrain.model.heads import IGNORE

CORA_CLASSES = ["Theory", "Reinforcement_Learning", "Genetic_Algorithms", "Neural_Networks",
                "Probabilistic_Methods", "Case_Based", "Rule_Learning"]
SPLIT_KEYS = {"train": "train_idx", "dev": "val_idx", "test": "test_idx"}


def load_planetoid(path) -> dict[str, np.ndarray]:
    """Read and check a planetoid .npz; any inconsistency is a UserError naming the file and array."""
    if not path.is_file():
        raise UserError(f"graph file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None
    needed = ["features", "labels", "edge_index", *SPLIT_KEYS.values()]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing arrays {', '.join(missing)}")
    nodes = arrays["features"].shape[0]
    if arrays["labels"].shape != (nodes,):
        raise UserError(f"{path}: labels has {arrays['labels'].shape[0]} entries for {nodes} nodes (features rows)")
    edges = arrays["edge_index"]
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise UserError(f"{path}: edge_index must have shape (2, E), got {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= nodes):
        bad = int(np.argmax((edges < 0).any(0) | (edges >= nodes).any(0)))
        raise UserError(f"{path}: edge {bad} ({edges[0, bad]} -> {edges[1, bad]}) points to a missing node "
                        f"(nodes are 0..{nodes - 1})")
    for key in SPLIT_KEYS.values():
        idx = arrays[key]
        if idx.size and (idx.min() < 0 or idx.max() >= nodes):
            raise UserError(f"{path}: {key} holds node ids outside 0..{nodes - 1}")
    return arrays


class PlanetoidTask(Task):
    input = "graph"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._graph = None

    def graph(self) -> dict[str, torch.Tensor]:
        """Features (row-normalised), labels, edges (+ self loops), loaded once."""
        if self._graph is None:
            folder = dataset_dir(self.cfg.data.root, self.cfg.data.dataset)
            arrays = load_planetoid(folder / f"{self.cfg.data.dataset}_planetoid.npz")
            features = torch.from_numpy(arrays["features"].astype(np.float32))
            features = features / features.sum(1, keepdim=True).clamp(min=1)  # bag of words -> frequencies
            nodes = features.shape[0]
            edges = torch.from_numpy(arrays["edge_index"]).long()
            loops = torch.arange(nodes).expand(2, nodes)
            self._graph = {
                "features": features,
                "labels": torch.from_numpy(arrays["labels"]).long(),
                "edges": torch.cat([edges[:, edges[0] != edges[1]], loops], dim=1),
                **{split: torch.from_numpy(arrays[key]).long() for split, key in SPLIT_KEYS.items()},
            }
        return self._graph

    def prepare(self, state: dict | None = None) -> None:
        graph = self.graph()
        self.num_labels = int(graph["labels"].max()) + 1
        self.classes = CORA_CLASSES if self.cfg.data.dataset == "cora" else [str(i) for i in range(self.num_labels)]

    def state(self) -> dict:
        return {"classes": self.classes}

    def info(self) -> dict:
        return {"input": "graph", "num_features": self.graph()["features"].shape[1], "num_labels": self.num_labels}

    def read_split(self, split: str) -> list[dict]:
        return [{"split": split}]

    def encode(self, example: dict, *, max_len: int | None) -> dict:
        graph = self.graph()
        labels = torch.full_like(graph["labels"], IGNORE)
        if example["split"] in SPLIT_KEYS:
            nodes = graph[example["split"]]
            labels[nodes] = graph["labels"][nodes]
        return {"length": graph["features"].shape[0], "labels": labels, **example}

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if len(items) != 1:
            raise ValueError("a graph batch holds exactly one graph")
        graph = self.graph()
        batch = {
            "features": graph["features"][None],  # (1,N,F)
            "mask": torch.ones(1, items[0]["length"], dtype=torch.bool),
            "labels": items[0]["labels"][None],  # (1,N)
        }
        if self.cfg.data.graph_mask == "edges":
            batch["edges"] = graph["edges"]  # (2,N_edges)
        return batch

    predict_batch_size = 1

    def parse_inputs(self, lines: list[str]) -> list[dict]:
        nodes = self.graph()["features"].shape[0]
        examples = []
        for line in lines:
            if not line.strip():
                examples.append({"split": "none", "node": None})
                continue
            if not line.strip().isdigit() or int(line) >= nodes:
                raise UserError(f"predict: expected a node id 0..{nodes - 1}, got {line.strip()!r}")
            examples.append({"split": "none", "node": int(line)})
        return examples

    def is_empty(self, example: dict) -> bool:
        return example["node"] is None

    def describe(self, example: dict, prediction: list[int]) -> str:
        node = example["node"]
        return f"node {node}: {self.classes[prediction[node]]}"

    def record(self, example: dict, prediction: list[int], scores=None) -> dict:
        if example.get("node") is None:  # a whole split (eval --save-predictions): every node's label
            return {"labels": [self.classes[p] for p in prediction]}
        return {"node": example["node"], "label": self.classes[prediction[example["node"]]]}
