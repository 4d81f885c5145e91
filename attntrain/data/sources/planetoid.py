"""Planetoid's original files (`ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`, Yang et al. 2016, as GCN
and PyTorch Geometric read them) -> the arrays of a `<name>_planetoid.npz`.

The files are Python 2 pickles of scipy CSR matrices, numpy arrays and a defaultdict. They are unpickled
by a whitelist (`find_class`): numpy's array reconstruction, `collections.defaultdict`, `list`, and scipy's
`csr_matrix` mapped to a small stand-in that keeps its pickled state (data, indices, indptr, shape), so no
scipy is needed and a tampered file cannot run code: any other global is one error naming the file.
The arrays follow GCN's `load_data`: features = allx + tx and labels = ally + ty with the test rows moved to
the ids of `test.index` (ids missing from it, as Citeseer's isolated nodes, get zero features and no label);
train = the first len(y) nodes, dev = the next 500, test = the sorted `test.index` ids; edges = every pair of
`graph` in both directions, repeats and self loops dropped.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from attntrain.errors import UserError

PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
DEV_NODES = 500  # Planetoid's validation split: the 500 nodes after the training ones


class SparseMatrix:
    """Stand-in for a pickled scipy CSR matrix: the pickle sets its __dict__ (data, indices, indptr, _shape)."""

    def dense(self) -> np.ndarray:
        shape = self.__dict__.get("_shape") or self.__dict__.get("shape")
        out = np.zeros(shape, dtype=self.data.dtype)
        out[np.repeat(np.arange(shape[0]), np.diff(self.indptr)), self.indices] = self.data
        return out


class PlanetoidUnpickler(pickle.Unpickler):
    """Loads only what the Planetoid pickles contain, so a tampered file cannot run code."""

    ALLOWED = {("collections", "defaultdict"), ("__builtin__", "list"), ("builtins", "list"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
    SPARSE = {("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse._csr", "csr_matrix")}

    def find_class(self, module, name):
        if (module, name) in self.SPARSE:
            return SparseMatrix
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}: not an object a Planetoid file holds")
        if module.endswith("core.multiarray"):  # numpy 2 renamed numpy.core to numpy._core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
        return super().find_class(module, name)


def load_part(path: Path):
    """One pickled Planetoid file; a missing, damaged or unexpected one is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"Planetoid file not found: {path}")
    try:
        with open(path, "rb") as f:
            return PlanetoidUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: not a Planetoid pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise UserError(f"{path}: not a readable Planetoid pickle ({type(e).__name__}: {e})") from None


def _dense(value, path: Path) -> np.ndarray:
    array = value.dense() if isinstance(value, SparseMatrix) else value
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise UserError(f"{path}: expected a matrix, found {type(value).__name__}")
    return array


def _test_index(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"Planetoid file not found: {path}")
    lines = path.read_text(encoding="utf-8").split()
    bad = next((i for i, text in enumerate(lines) if not text.isdigit()), None)
    if bad is not None:
        raise UserError(f"{path}:{bad + 1}: '{lines[bad]}' is not a node id")
    return np.array([int(text) for text in lines], dtype=np.int64)


def read_planetoid(folder: str | Path, name: str) -> dict[str, np.ndarray]:
    """features (N,F) float32, labels (N,) int64 (-1: no label), edge_index (2,E) int64, train_idx, val_idx,
    test_idx: as `attntrain.data.tasks.graph.load_planetoid` reads them from an npz."""
    folder = Path(folder)
    paths = {part: folder / f"ind.{name}.{part}" for part in PARTS}
    parts = {part: load_part(path) for part, path in paths.items()}
    matrices = {part: _dense(parts[part], paths[part]) for part in PARTS if part != "graph"}
    test_index = _test_index(folder / f"ind.{name}.test.index")
    test_sorted = np.sort(test_index)
    tx, ty = matrices["tx"], matrices["ty"]
    if len(tx) != len(test_index) or len(ty) != len(test_index):
        raise UserError(f"{paths['tx']}: {len(tx)} test rows (ty {len(ty)}) for {len(test_index)} ids in "
                        f"{folder / f'ind.{name}.test.index'}")
    span = int(test_sorted[-1] - test_sorted[0] + 1) if len(test_sorted) else 0
    if span != len(tx):  # test ids with gaps (Citeseer): the missing ones are isolated nodes, all zero
        positions = test_sorted - test_sorted[0]
        tx = _rows_at(tx, positions, span)
        ty = _rows_at(ty, positions, span)
    features = np.vstack([matrices["allx"], tx]).astype(np.float32)
    onehot = np.vstack([matrices["ally"], ty])
    features[test_index], onehot[test_index] = features[test_sorted], onehot[test_sorted]
    labels = np.where(onehot.any(1), onehot.argmax(1), -1).astype(np.int64)
    graph = parts["graph"]
    if not isinstance(graph, dict):
        raise UserError(f"{paths['graph']}: expected a dict of neighbour lists, found {type(graph).__name__}")
    pairs = {(int(node), int(other)) for node, neighbours in graph.items() for other in neighbours if node != other}
    edges = sorted(pairs | {(other, node) for node, other in pairs})
    train = len(matrices["y"])
    return {"features": features, "labels": labels, "edge_index": np.array(edges, dtype=np.int64).reshape(-1, 2).T,
            "train_idx": np.arange(train), "val_idx": np.arange(train, train + DEV_NODES), "test_idx": test_sorted}


def _rows_at(rows: np.ndarray, positions: np.ndarray, count: int) -> np.ndarray:
    out = np.zeros((count, rows.shape[1]), dtype=rows.dtype)
    out[positions] = rows
    return out
