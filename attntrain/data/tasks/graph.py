"""Graph input: node classification, one vector per node.

The whole graph is one example (B = 1, T = number of nodes). Every split sees all nodes and edges
(transductive learning); only the labels of the split's own nodes are kept, the rest are ignored
by the loss and the metrics. Attention is restricted to edges (+ self loops) unless
`data.graph_mask: none`, which lets every node attend to every node.

One task, three ways to fill the same arrays (`GraphArrays`): a Planetoid .npz (`data.task: planetoid`,
below), Planetoid's original ind.* files (the task without its npz, or `data.source.format: planetoid`,
attntrain.data.sources.planetoid) or a node table + an edge table (`data.source.format: graph`,
attntrain.data.tasks.graph_tables).
Everything after loading (label ids, splits, feature scaling, edges, predict) is shared.

# N nodes, F features per node, E edges
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from attntrain.data.batching import IGNORE
from attntrain.data.tasks.splits import fold_split, given_train_folds, ratio_split
from attntrain.data.tasks.subset import too_few_classes
from attntrain.data.tasks.graph_tables import GraphArrays, table_arrays  # GraphArrays re-exported: data.graph.GraphArrays
from attntrain.data.inputs.kinds import GraphInput
from attntrain.data.sources.files import base_folder
from attntrain.data.sources.planetoid import read_planetoid
from attntrain.data.sources.root import dataset_dir
from attntrain.data.targets.labels import sorted_labels, unknown_label
from attntrain.data.tasks.base import Task
from attntrain.errors import UserError

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


def planetoid_arrays(cfg) -> GraphArrays:
    """<dataset>/<dataset>_planetoid.npz under the data root, else the original <dataset>/planetoid/ind.<dataset>.*
    files beside it; or (data.source.format planetoid) the ind.<name>.* files in source.path. Class names for
    cora, ids as text otherwise (a negative label: an unlabelled node)."""
    source = cfg.data.source
    if source is not None:
        folder = Path(source.path).expanduser()
        folder = folder if folder.is_absolute() else base_folder(cfg.data) / folder
        name, path = source.name, folder / f"ind.{source.name}.*"
        arrays = read_planetoid(folder, name)
    else:
        name = cfg.data.dataset
        path = dataset_dir(cfg.data.root, name) / f"{name}_planetoid.npz"
        original = path.parent / "planetoid"
        if not path.is_file() and (original / f"ind.{name}.x").is_file():
            path = original / f"ind.{name}.*"
            arrays = read_planetoid(original, name)
        else:
            arrays = load_planetoid(path)
    labels = arrays["labels"].tolist()
    classes = CORA_CLASSES if name == "cora" else [str(i) for i in range(max(labels) + 1)]
    return GraphArrays(features=torch.from_numpy(arrays["features"].astype(np.float32)),
                       edges=torch.from_numpy(arrays["edge_index"]).long(), ids=list(range(len(labels))),
                       labels=[classes[i] if i >= 0 else None for i in labels], origin=str(path), classes=classes,
                       splits={split: arrays[key].tolist() for split, key in SPLIT_KEYS.items()})


def graph_edges(edges: torch.Tensor, nodes: int, *, undirected: bool) -> torch.Tensor:
    """Edges as attention reads them: without self loops and repeats (undirected: + each reversed), then
    one self loop per node. Listed edges keep their order, added reverses follow, so a file that lists
    both directions gives its own order back. (2,E) -> (2,E')"""
    edges = edges[:, edges[0] != edges[1]]
    if undirected:
        edges = torch.cat([edges, edges.flip(0)], dim=1)  # (2,2E)
    keys = (edges[0] * nodes + edges[1]).numpy()
    _, first = np.unique(keys, return_index=True)
    edges = edges[:, torch.from_numpy(np.sort(first))]
    loops = torch.arange(nodes).expand(2, nodes)
    return torch.cat([edges, loops], dim=1)


class GraphTask(Task):
    """Node classification on one graph, from a Planetoid .npz or from node + edge tables.

    batch: features (1,N,F), mask (1,N), labels (1,N) (IGNORE outside the split), edges (2,E) with
    data.graph_mask: edges.
    """

    input = "graph"
    predict_batch_size = 1

    def __init__(self, cfg):
        super().__init__(cfg)
        self._arrays: Optional[GraphArrays] = None
        self._split_index: Optional[dict[str, list[int]]] = None  # a seeded split, saved with the run
        self._graph: Optional[dict[str, torch.Tensor]] = None
        self.classes: Optional[list[str]] = None

    # ---- loading ---------------------------------------------------------------------------------
    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            if self.cfg.data.source is None or self.cfg.data.source.format == "planetoid":
                self._arrays = planetoid_arrays(self.cfg)
            else:
                self._arrays = table_arrays(self.cfg.data)
        return self._arrays

    def node_splits(self) -> dict[str, list[int]]:
        """split -> node positions: as the data gives them, else a seeded split of the labelled nodes; train
        cut to data.train_fraction / train_examples (of its labelled nodes)."""
        splits = self._whole_splits()
        if splits.get("train"):
            splits = {**splits, "train": self.cut_train(splits["train"])}
        return splits

    def _whole_splits(self) -> dict[str, list[int]]:
        arrays = self.arrays()
        settings = self.cfg.data.split
        if arrays.splits is not None and settings.folds > 1:  # folds of the given train nodes: fold k is dev
            if self._split_index is None:
                train = arrays.splits.get("train") or []
                index = given_train_folds(len(train), settings, bool(arrays.splits.get("dev")))
                self._split_index = {**arrays.splits, **{k: [train[i] for i in v] for k, v in index.items()}}
            return self._split_index
        if arrays.splits is not None:
            return arrays.splits
        if self._split_index is None:
            labelled = [i for i, name in enumerate(arrays.labels) if name is not None]
            index = (fold_split(len(labelled), settings.folds, settings.fold or 0, settings.dev, settings.seed)
                     if settings.folds > 1 else ratio_split(len(labelled), settings.dev, settings.test, settings.seed))
            self._split_index = {split: [labelled[i] for i in rows] for split, rows in index.items()}
        return self._split_index

    @property
    def splits(self) -> tuple[str, ...]:  # type: ignore[override]
        try:
            return tuple(s for s in SPLIT_KEYS if self.node_splits().get(s))
        except UserError:  # reported by prepare, with the whole message
            return tuple(SPLIT_KEYS)

    def prepare(self, state: dict | None = None) -> None:
        arrays = self.arrays()
        if state is not None:
            self.classes, self._split_index = state["classes"], state.get("split_index")
        splits = self.node_splits()
        self._check_splits(arrays, splits)
        if state is None:
            train = {arrays.labels[i] for i in splits["train"]}
            self.classes = arrays.classes or sorted_labels(train)
        ids = {name: i for i, name in enumerate(self.classes)}
        for split in ("dev", "test"):
            for node in splits.get(split, []):
                if arrays.labels[node] not in ids:
                    raise UserError(unknown_label(arrays.node(node), "label", arrays.labels[node], self.classes,
                                                  None))
        if state is None and self.train_subset is not None:
            too_few_classes(self.train_subset, {arrays.labels[i] for i in splits["train"]})
        if state is None and len({arrays.labels[i] for i in splits["train"]}) < 2:
            raise UserError(f"{arrays.origin}: every one of the {len(splits['train'])} training nodes has label "
                            f"'{arrays.labels[splits['train'][0]]}' (field '{self.cfg.data.target.field}'); a "
                            "classifier needs at least two classes")
        inputs = GraphInput(self.cfg.data)
        self._graph = {
            "features": inputs.scale(arrays.features),  # (N,F)
            "labels": torch.tensor([ids.get(name, IGNORE) for name in arrays.labels], dtype=torch.long),  # (N,)
            "edges": graph_edges(arrays.edges, len(arrays.ids), undirected=self.cfg.data.graph.undirected),
            **{split: torch.tensor(splits.get(split, []), dtype=torch.long) for split in SPLIT_KEYS},
        }
        self.num_labels = len(self.classes)

    def _check_splits(self, arrays: GraphArrays, splits: dict[str, list[int]]) -> None:
        """Train has nodes; every node of a split has a label."""
        if not splits.get("train"):
            how = (f"split column '{self.cfg.data.split.column}'" if self.cfg.data.split.column
                   else "labelled nodes after the dev/test split" if arrays.splits is None else "train_idx")
            raise UserError(f"{arrays.origin}: no labelled training nodes ({how}; label field "
                            f"'{self.cfg.data.target.field}')")
        for split, nodes in splits.items():
            for node in nodes:
                if arrays.labels[node] is None:
                    raise UserError(f"{arrays.node(node)}: node '{arrays.ids[node]}' is in the {split} split "
                                    f"but has no label (field '{self.cfg.data.target.field}')")

    def graph(self) -> dict[str, torch.Tensor]:
        """Features (scaled), labels, edges (+ self loops) and each split's nodes; prepare() builds them."""
        if self._graph is None:
            self.prepare()
        return self._graph

    def state(self) -> dict:
        return {"classes": self.classes, "split_index": self._split_index}

    def info(self) -> dict:
        return {**GraphInput(self.cfg.data).info(self.graph()["features"]), "num_labels": self.num_labels}

    # ---- examples: one per split, the whole graph ---------------------------------------------------
    def read_split(self, split: str) -> list[dict]:
        if not self.node_splits().get(split):
            raise UserError(f"data: the {split} split has no nodes ({self.arrays().origin})")
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
            batch["edges"] = graph["edges"]  # (2,E)
        return batch

    # ---- predict: a node id per line ------------------------------------------------------------------
    def parse_inputs(self, lines: list[str]) -> list[dict]:
        ids = self.arrays().ids
        positions = {str(name): i for i, name in enumerate(ids)}
        examples = []
        for line in lines:
            name = line.strip()
            if name and name not in positions:
                shown = ", ".join(str(n) for n in ids[:3])
                raise UserError(f"predict: no node {name!r} in this graph ({len(ids)} nodes, ids like {shown}, ...)")
            examples.append({"split": "none", "node": positions[name] if name else None})
        return examples

    def is_empty(self, example: dict) -> bool:
        return example["node"] is None

    def describe(self, example: dict, prediction: list[int]) -> str:
        node = example["node"]
        return f"node {self.arrays().ids[node]}: {self.classes[prediction[node]]}"

    def record(self, example: dict, prediction: list[int], scores: Any = None) -> dict:
        if example.get("node") is None:  # a whole split (eval --save-predictions): every node's label
            return {"labels": [self.classes[p] for p in prediction]}
        node = example["node"]
        return {"node": self.arrays().ids[node], "label": self.classes[prediction[node]]}
