"""Graph input: edge-restricted attention (sparse path), the Cora task, and malformed graph files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from attntrain.config import EncoderConfig, build_config
from attntrain.data import build_task
from attntrain.data.tasks.graph import load_planetoid
from attntrain.errors import UserError
from attntrain.model import build_model
from attntrain.model.attention import NORMALIZERS, SCORES
from attntrain.model.encoder import build_transformer
from attntrain.model.gat import build_gat
from tests.conftest import shared_data

# A 6-node graph: 0-1, 1-2, 3-4 (both directions) + self loops; node 5 is isolated.
PAIRS = [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]
EDGES = torch.tensor(PAIRS + [(i, i) for i in range(6)]).T  # (2,N_edges): source, target


def dense_mask(edges: torch.Tensor, nodes: int) -> torch.Tensor:
    mask = torch.zeros(1, nodes, nodes, dtype=torch.bool)
    mask[0, edges[1], edges[0]] = True  # target attends to source
    return mask


def encoder(score: str, normalize: str, layers: int = 2, residual: bool = True):
    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=layers, width=16, num_heads=4, ffn_dim=0, position="none", residual=residual,
                        attention={"score": score, "normalize": normalize})
    return build_transformer(cfg).eval()


@pytest.mark.parametrize("score,normalize,residual", list(itertools.product(SCORES, NORMALIZERS, [True, False])))
def test_sparse_edge_attention_equals_dense_masked_attention(score, normalize, residual):
    model = encoder(score, normalize, residual=residual)
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    sparse = model(x, mask, edges=EDGES)
    dense = model(x, mask, attn_mask=dense_mask(EDGES, 6))
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def check_non_neighbours_do_not_reach(model) -> None:
    """Node 0's component is {0, 1, 2} (2 hops): changing nodes 3, 4, 5 must leave nodes 0..2 untouched."""
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    changed = x.clone()
    changed[0, 3:] = torch.randn(3, 16)
    a, b = model(x, mask, edges=EDGES), model(changed, mask, edges=EDGES)
    torch.testing.assert_close(a[0, :3], b[0, :3])
    assert not torch.allclose(a[0, 3:5], b[0, 3:5])
    full_a, full_b = model(x, mask), model(changed, mask)  # without edges, everything reaches node 0
    assert not torch.allclose(full_a[0, 0], full_b[0, 0])


@pytest.mark.parametrize("score,normalize", list(itertools.product(SCORES, NORMALIZERS)))
def test_non_neighbour_features_do_not_reach_a_node(score, normalize):
    check_non_neighbours_do_not_reach(encoder(score, normalize))


def cora_config(tmp_path, **data):
    raw = {"name": "cora", "runs_dir": str(tmp_path), "data": {"task": "planetoid", "dataset": "cora", **data},
           "model": {"encoder": {"num_layers": 1, "width": 16, "num_heads": 2, "ffn_dim": 0, "position": "none",
                                 "attention": {"score": "additive", "dropout": 0.5}}},
           "train": {"max_steps": 3, "progress": False}}
    return build_config(raw, "test")


@pytest.mark.parametrize("graph_mask", ["edges", "none"])
def test_cora_forward_backward_uses_only_split_labels(tmp_path, graph_mask):
    cfg = cora_config(tmp_path, graph_mask=graph_mask)
    task = build_task(cfg)
    task.prepare()
    assert task.info() == {"input": "graph", "num_features": 1433, "num_labels": 7}
    model = build_model(cfg, task.info())
    for split, count in (("train", 140), ("dev", 500), ("test", 1000)):
        batch = task.batch(split, [0])
        assert int((batch["labels"] != -100).sum()) == count
        assert ("edges" in batch) == (graph_mask == "edges")
    out = model(task.batch("train", [0]))
    out["loss"].backward()
    assert out["logits"].shape == (1, 2708, 7)
    assert model.embed.project.weight.grad.abs().sum() > 0


def write_graph(path, **changes):
    with np.load(shared_data() / "cora" / "cora_planetoid.npz") as real:
        arrays = {k: real[k] for k in real.files}
    arrays.update(changes)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"edge_index": np.array([[0, 1], [1, 9999]])}, "edge 1 (1 -> 9999) points to a missing node"),
        ({"labels": np.zeros(100, dtype=np.int64)}, "labels has 100 entries for 2708 nodes"),
        ({"test_idx": np.array([5000])}, "test_idx holds node ids outside 0..2707"),
        ({"edge_index": np.zeros((3, 4), dtype=np.int64)}, "edge_index must have shape (2, E)"),
    ],
)
def test_malformed_graph_file_is_a_clear_error(tmp_path, changes, message):
    path = tmp_path / "cora_planetoid.npz"
    write_graph(path, **changes)
    with pytest.raises(UserError) as err:
        load_planetoid(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_missing_array_and_non_npz(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, features=np.zeros((3, 2)))
    with pytest.raises(UserError, match="missing arrays labels, edge_index"):
        load_planetoid(bad)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_planetoid(junk)


def test_seeds_report_mean_and_std_of_the_per_seed_results(tmp_path):
    import json
    import statistics

    from attntrain.runs import fit_seeds

    cfg = cora_config(tmp_path)
    cfg.train.seeds, cfg.train.eval_every = 3, 3
    result = fit_seeds(cfg)
    per_seed = [json.loads((tmp_path / "cora" / f"seed-{s}" / "eval_test.json").read_text())["accuracy"]
                for s in (1, 2, 3)]
    assert result.metrics["test mean"]["accuracy"] == pytest.approx(statistics.fmean(per_seed))
    assert result.metrics["test std"]["accuracy"] == pytest.approx(statistics.stdev(per_seed))
    summary = json.loads((tmp_path / "cora" / "summary.json").read_text())
    assert summary["seeds"] == [1, 2, 3]
    again = fit_seeds(cfg)  # finished seeds are read back, not retrained
    assert again.metrics == result.metrics


def gat_encoder(normalize: str = "softmax", layers: int = 3):
    """3 layers: the first attends over its input, the middle one projects, the last averages 2 heads."""
    torch.manual_seed(0)
    cfg = EncoderConfig(kind="gat", num_layers=layers, width=16, num_heads=4, output_heads=2,
                        attention={"normalize": normalize, "dropout": 0.5}, dropout=0.5)
    return build_gat(cfg)


def test_gat_forward_backward_on_a_tiny_graph():
    model = gat_encoder().train()
    x = torch.randn(1, 6, 16, requires_grad=True)
    out = model(x, torch.ones(1, 6, dtype=torch.bool), edges=EDGES)
    out.square().sum().backward()
    assert out.shape == (1, 6, 16) and torch.isfinite(out).all()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert [type(layer.project).__name__ for layer in model.layers] == ["Identity", "Linear", "Identity"]


@pytest.mark.parametrize("normalize", list(NORMALIZERS))
def test_gat_non_neighbour_features_do_not_reach_a_node(normalize):
    check_non_neighbours_do_not_reach(gat_encoder(normalize).eval())


@pytest.mark.parametrize("normalize", list(NORMALIZERS))
def test_gat_edge_path_equals_dense_path(normalize):
    """The edge list of a complete graph (with self loops) = dense attention over all nodes; any edge
    list = dense attention under the matching mask."""
    model = gat_encoder(normalize).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    complete = torch.tensor(list(itertools.product(range(6), repeat=2))).T  # (2,36) incl. (i, i)
    torch.testing.assert_close(model(x, mask, edges=complete), model(x, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x, mask, edges=EDGES), model(x, mask, attn_mask=dense_mask(EDGES, 6)),
                               rtol=1e-5, atol=1e-5)


def test_gat_cora_model_uses_the_embed_projection_as_first_layer(tmp_path):
    raw = {"name": "cora", "runs_dir": str(tmp_path), "data": {"task": "planetoid", "dataset": "cora"},
           "model": {"encoder": {"kind": "gat", "num_layers": 2, "width": 16, "num_heads": 2}},
           "train": {"max_steps": 3, "progress": False}}
    cfg = build_config(raw, "test")
    task = build_task(cfg)
    task.prepare()
    model = build_model(cfg, task.info())
    out = model(task.batch("train", [0]))
    out["loss"].backward()
    assert out["logits"].shape == (1, 2708, 7)
    assert model.embed.project.weight.grad.abs().sum() > 0
    assert not any(isinstance(m, torch.nn.Linear) for m in model.encoder.modules())  # W1 = Embed, W2 = Head
