"""A graph from a node table + an edge table (data.source.format: graph): the same arrays, training and
predictions as the Planetoid .npz, and one clear message per malformed table."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from attntrain.checks import check_config
from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.tasks.graph import CORA_CLASSES
from attntrain.data.sources.root import data_root
from attntrain.errors import UserError
from attntrain.runs import eval_run, predict
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("own_data_examples", REPO / "scripts" / "own_data_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)

MODEL = {"encoder": {"kind": "gat", "num_layers": 2, "width": 16, "num_heads": 2, "dropout": 0.5,
                     "attention": {"dropout": 0.5}}}
TRAIN = {"lr": 0.05, "max_steps": 20, "eval_every": 10, "log_every": 10, "progress": False, "threads": 1,
         "warmup_steps": 0, "optimizer": "adam", "weight_decay": 5e-4}


@pytest.fixture(scope="module")
def cora(tmp_path_factory):
    """Cora written as nodes.csv + edges.csv (class ids as labels) and as .jsonl (class names as labels)."""
    folder = tmp_path_factory.mktemp("cora_tables")
    examples.cora_tables(folder / "csv", data_root(), names=False)
    examples.cora_tables(folder / "jsonl", data_root(), fmt="jsonl")
    return folder


def graph_data(nodes, edges, **data) -> dict:
    return {"source": {"format": "graph", "files": {"nodes": str(nodes), "edges": str(edges)}},
            "input": {"field": "features", "kind": "graph"}, "target": {"field": "label"}, **data}


def raw_config(tmp_path, data: dict, name: str = "graph", **model) -> dict:
    return {"name": name, "seed": 1, "runs_dir": str(tmp_path / "runs"), "data": data,
            "model": {**MODEL, **model}, "train": TRAIN}


def cora_data(cora, fmt: str) -> dict:
    return graph_data(cora / fmt / f"nodes.{fmt}", cora / fmt / f"edges.{fmt}", split={"column": "split"})


def prepared(raw: dict):
    task = build_task(build_config(raw, "test"))
    task.prepare()
    return task


def npz_data() -> dict:
    return {"task": "planetoid", "dataset": "cora"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tables_give_the_npz_arrays(cora, tmp_path, fmt):
    npz = prepared(raw_config(tmp_path, npz_data())).graph()
    task = prepared(raw_config(tmp_path, cora_data(cora, fmt)))
    tables = task.graph()
    assert set(tables) == set(npz) == {"features", "labels", "edges", "train", "dev", "test"}
    for key in ("features", "edges", "train", "dev", "test"):
        assert torch.equal(tables[key], npz[key]), key
    if fmt == "csv":  # class ids as labels: the same ids
        assert torch.equal(tables["labels"], npz["labels"])
        assert task.classes == [str(i) for i in range(7)]
    else:  # class names: sorted, the same name for every node
        assert task.classes == sorted(CORA_CLASSES)
        assert [task.classes[i] for i in tables["labels"]] == [CORA_CLASSES[i] for i in npz["labels"]]
    assert tables["features"].dtype == torch.float32 and tables["features"].sum(1).max() == pytest.approx(1.0)


def fit(raw: dict):
    cfg = build_config(raw, "test")
    return cfg, Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()


def test_training_from_tables_matches_the_npz_preset(cora, tmp_path):
    _, npz = fit(raw_config(tmp_path, npz_data(), name="npz"))
    _, tables = fit(raw_config(tmp_path, cora_data(cora, "csv"), name="tables"))
    for split in ("dev", "test"):
        same = ("accuracy", "loss", "step", "tokens")
        assert {k: tables.metrics[split][k] for k in same} == {k: npz.metrics[split][k] for k in same}, split
    assert npz.metrics["dev"]["accuracy"] > 50  # it learned in 20 steps (7 classes)
    # predict by node id: the same class (the npz run names it, the table run gives its id)
    [by_name] = list(predict(npz.run_dir, ["2000"]))
    [by_id] = list(predict(tables.run_dir, ["2000"]))
    assert by_id == f"node 2000: {CORA_CLASSES.index(by_name.split(': ')[1])}"
    with pytest.raises(UserError, match="predict: no node '99999' in this graph"):
        list(predict(tables.run_dir, ["99999"]))


TINY_NODES = "id,features,label\n" + "".join(
    f"{name},{' '.join(str((i + k) % 3) for k in range(4))},{'yes' if i % 2 else 'no'}\n"
    for i, name in enumerate("abcdefghijkl")) + "x,0 0 1 1,\n"  # x: unlabelled
TINY_EDGES = "source,target\na,b\nb,c\nc,d\nd,e\ne,f\nf,g\ng,h\nh,i\ni,j\nj,k\nk,l\nl,x\n"


def tiny_graph(tmp_path, nodes: str = TINY_NODES, edges: str = TINY_EDGES, suffix: str = "csv") -> tuple:
    (tmp_path / f"nodes.{suffix}").write_text(nodes)
    (tmp_path / f"edges.{suffix}").write_text(edges)
    return tmp_path / f"nodes.{suffix}", tmp_path / f"edges.{suffix}"


def test_string_ids_and_a_saved_ratio_split_of_the_labelled_nodes(tmp_path):
    nodes, edges = tiny_graph(tmp_path)
    data = graph_data(nodes, edges, split={"dev": 0.25, "test": 0.25, "seed": 2})
    cfg, result = fit(raw_config(tmp_path, data, name="tiny"))
    state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert state["classes"] == ["no", "yes"]
    split = state["split_index"]
    assert sorted(len(v) for v in split.values()) == [3, 3, 6]
    assert sorted(i for v in split.values() for i in v) == list(range(12))  # node x (12) has no label
    assert eval_run(result.run_dir, "test")["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    [line] = list(predict(result.run_dir, ["x"]))
    assert line.split(": ")[0] == "node x" and line.split(": ")[1] in ("no", "yes")
    graph = build_task(cfg).graph()
    assert graph["edges"].shape == (2, 2 * 12 + 13)  # each edge both ways + a self loop per node


def test_directed_edges_and_unscaled_feature_columns(tmp_path):
    nodes = "id,f1,f2,label,split\n1,0.5,2,p,train\n2,1,-3,q,train\n3,0,0,p,dev\n4,2,2,q,test\n"
    nodes_file, edges_file = tiny_graph(tmp_path, nodes, "source,target\n1,2\n2,1\n3,4\n")
    data = graph_data(nodes_file, edges_file, split={"column": "split"},
                      graph={"undirected": False, "normalize": "none"})
    data["input"]["field"] = ["f1", "f2"]
    graph = prepared(raw_config(tmp_path, data)).graph()
    assert graph["features"].tolist() == [[0.5, 2.0], [1.0, -3.0], [0.0, 0.0], [2.0, 2.0]]
    assert graph["edges"].T.tolist() == [[0, 1], [1, 0], [2, 3], [0, 0], [1, 1], [2, 2], [3, 3]]
    data["graph"] = {"normalize": "rows"}
    scaled = prepared(raw_config(tmp_path, data)).graph()["features"]
    assert scaled[1].tolist() == [0.25, -0.75] and scaled[2].tolist() == [0.0, 0.0]


BAD = [
    ("edges", "source,target\na,b\nb,zz\n", r"edges.csv:3: target node 'zz' is not in the node table .*nodes.csv"),
    ("nodes", "id,features,label\na,1 0,p\nb,0 1,q\na,1 1,p\n", r"nodes.csv:4: node id 'a' repeats .*nodes.csv:2"),
    ("nodes", "id,features,label\na,1 0,p\nb,0 1 1,q\n",
     r"nodes.csv:3: 3 features, but .*nodes.csv:2 has 2; every node needs the same number"),
    ("nodes", "id,features,label\na,1 0,p\nb,0 x,q\n", r"nodes.csv:3: field 'features', value 2, is 'x', not a number"),
    ("nodes", "id,feats,label\na,1 0,p\nb,0 1,q\n", r"nodes.csv:2: no field 'features' \(fields: id, feats, label\)"),
    ("edges", "from,to\na,b\n", r"edges.csv:2: no field 'source' \(fields: from, to\)"),
    ("nodes", "id,features,label\na,1 0,\nb,0 1,\n", r"nodes.csv: no labelled training nodes"),
]


@pytest.mark.parametrize("table, text, message", BAD, ids=["unknown-node", "duplicate-id", "feature-lengths",
                                                            "non-numeric", "missing-field", "missing-edge-field",
                                                            "no-labels"])
def test_bad_tables_are_one_clear_error(tmp_path, table, text, message):
    files = {"nodes": "id,features,label\na,1 0,p\nb,0 1,q\n", "edges": "source,target\na,b\n", table: text}
    nodes, edges = tiny_graph(tmp_path, files["nodes"], files["edges"])
    with pytest.raises(UserError, match=message):
        prepared(raw_config(tmp_path, graph_data(nodes, edges, split={"dev": 0.0, "test": 0.0})))


def test_bad_tables_in_jsonl_and_feature_columns(tmp_path):
    nodes = '{"id": "a", "features": [1, 0], "label": 1}\n{"id": "b", "features": [0, null], "label": 2}\n'
    nodes_file, edges_file = tiny_graph(tmp_path, nodes, '{"source": "a", "target": "b"}\n', "jsonl")
    with pytest.raises(UserError, match=r"nodes.jsonl:2: field 'features', value 2, is None, not a number"):
        prepared(raw_config(tmp_path, graph_data(nodes_file, edges_file, split={"dev": 0.0, "test": 0.0})))
    columns = "id,f1,f2,label\na,1,2,p\nb,3,oops,q\n"
    nodes_file, edges_file = tiny_graph(tmp_path, columns, "source,target\na,b\n")
    data = graph_data(nodes_file, edges_file, split={"dev": 0.0, "test": 0.0})
    data["input"]["field"] = ["f1", "f2"]
    with pytest.raises(UserError, match=r"nodes.csv:3: field 'f2' is 'oops', not a number"):
        prepared(raw_config(tmp_path, data))


def test_split_column_and_labels_are_checked(tmp_path):
    nodes = "id,features,label,split\na,1 0,p,train\nb,0 1,q,dev\nc,1 1,,test\n"
    nodes_file, edges_file = tiny_graph(tmp_path, nodes, "source,target\na,b\n")
    data = graph_data(nodes_file, edges_file, split={"column": "split"})
    with pytest.raises(UserError, match=r"nodes.csv:4: node 'c' is in the test split but has no label"):
        prepared(raw_config(tmp_path, data))
    nodes_file, _ = tiny_graph(tmp_path, nodes.replace(",,test", ",p,test"), "source,target\na,b\n")
    with pytest.raises(UserError, match=r"nodes.csv:3: label 'q' never occurs in train \(train labels: p\)"):
        prepared(raw_config(tmp_path, data))
    nodes_file, _ = tiny_graph(tmp_path, nodes.replace("dev", "later"), "source,target\na,b\n")
    with pytest.raises(UserError, match=r"nodes.csv:3: split column 'split' holds 'later'"):
        prepared(raw_config(tmp_path, data))


@pytest.mark.parametrize("change, message", [
    ({"input": {"field": "features", "kind": "text"}}, "source.format graph / planetoid goes with input.kind graph"),
    ({"source": {"format": "csv", "path": "x.csv"}}, "source.format graph / planetoid goes with input.kind graph"),
    ({"input": {"field": ["a", "b"], "kind": "text"}}, "a list of fields is read by kind graph only"),
])
def test_config_pairs_graph_source_and_graph_input(tmp_path, change, message):
    data = {**graph_data("nodes.csv", "edges.csv"), **change}
    with pytest.raises(UserError, match=message):
        build_config(raw_config(tmp_path, data), "test")


def test_a_graph_needs_the_tagging_head_and_nodes_plus_edges(tmp_path):
    cfg = build_config(raw_config(tmp_path, graph_data("nodes.csv", "edges.csv"), head={"kind": "sequence"}), "c.yaml")
    with pytest.raises(UserError, match="c.yaml: model.head.kind: a graph run labels every node; use tagging"):
        check_config(cfg, "c.yaml")
    data = graph_data("nodes.csv", "edges.csv")
    data["source"]["files"] = {"train": "nodes.csv"}
    with pytest.raises(UserError, match="format graph needs exactly nodes and edges"):
        prepared(raw_config(tmp_path, data))
