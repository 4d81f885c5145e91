"""The arrays of a graph (`GraphArrays`, also what a Planetoid .npz fills in: attntrain.data.tasks.graph), and a
graph from two tables: a node table (id, features, label, split) and an edge table (source, target).

    data:
      source: {format: graph, files: {nodes: nodes.csv, edges: edges.csv}}  # csv, tsv, jsonl, parquet (by suffix)
      input: {field: features, kind: graph}  # numbers: a list, a space-separated string, or a list of fields
      target: {field: label}                 # text or integer labels; an empty label = an unlabelled node
      split: {column: split}                 # train / dev / test per node (empty: none); no column: a seeded
                                             # ratio split of the labelled nodes, saved with the run
      graph: {node_id: id, edge_fields: [source, target]}

The tables are read by the same reader as any csv / jsonl source (attntrain.data.sources.tables.table_rows),
so every row knows its file and line, and every problem below names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from attntrain.data.inputs.kinds import GraphInput, field_value
from attntrain.data.sources.files import SPLIT_ALIASES, WHERE, base_folder, expand
from attntrain.data.sources.tables import table_rows
from attntrain.data.targets.labels import label_name
from attntrain.errors import UserError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
ROLES = ("nodes", "edges")


@dataclass
class GraphArrays:
    """A graph as read, before label ids and scaling: what either source fills in.

    features (N,F) float32 as given; edges (2,E) node positions, row 0 source, row 1 target (the target
    attends to the source); ids: each node's name (`predict` takes it); labels: each node's label name
    or None; splits: split -> node positions when the data fixes them (npz arrays, a split column),
    None for a seeded split of the labelled nodes; classes: the label order when the data fixes it
    (npz), None to take the sorted train labels; origin: the node file, for messages; where: each
    node's file:line (None for the npz).
    """

    features: torch.Tensor
    edges: torch.Tensor
    ids: list
    labels: list[Optional[str]]
    splits: Optional[dict[str, list[int]]]
    origin: str
    classes: Optional[list[str]] = None
    where: Optional[list[str]] = None

    def node(self, position: int) -> str:
        """A node for messages: its file:line, or its id in the file."""
        return self.where[position] if self.where else f"{self.origin}: node {self.ids[position]}"


def table_format(path: Path) -> str:
    """csv / tsv / jsonl / parquet from the file name (a .gz after it is allowed)."""
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UserError(f"{path}: a graph table must end in {', '.join(TABLE_SUFFIXES)} (optionally .gz)")
    return TABLE_SUFFIXES[suffix]


def read_tables(data_cfg) -> dict[str, tuple[str, list[dict]]]:
    """nodes / edges -> (the first file's name, the rows of all its files)."""
    files = data_cfg.source.files or {}
    if sorted(files) != sorted(ROLES):
        raise UserError(f"data.source.files: format graph needs exactly nodes and edges, e.g. "
                        f"{{nodes: nodes.csv, edges: edges.csv}} (got {', '.join(files) or 'none'})")
    base = base_folder(data_cfg)
    out = {}
    for role in ROLES:
        paths = expand(base, files[role], what=f"data.source.files.{role}")
        out[role] = (str(paths[0]), [row for path in paths for row in table_rows(path, table_format(path))])
    if not out["nodes"][1]:
        raise UserError(f"{out['nodes'][0]}: no nodes")
    return out


def node_ids(rows: list[dict], field: str) -> tuple[list[Any], dict[str, int]]:
    """Each node's id (as given) and id text -> position; a repeated id names both lines."""
    ids, positions = [], {}
    for number, row in enumerate(rows):
        name = field_value(row, field, f"node {number + 1}")
        key = str(name)
        if name is None or key == "":
            raise UserError(f"{row[WHERE]}: empty node id (field '{field}')")
        if key in positions:
            raise UserError(f"{row[WHERE]}: node id '{key}' repeats {rows[positions[key]][WHERE]}")
        positions[key] = number
        ids.append(name)
    return ids, positions


def node_label(row: dict, field: str) -> Optional[str]:
    """A node's label name; None or an empty value: an unlabelled node."""
    value = field_value(row, field, "node")
    return None if value is None or value == "" else label_name(value, field, row[WHERE])


def column_splits(rows: list[dict], column: str) -> dict[str, list[int]]:
    """split -> node positions from a split column; an empty value puts the node in no split."""
    out: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for number, row in enumerate(rows):
        value = field_value(row, column, "node")
        if value is None or str(value).strip() == "":
            continue
        if str(value).lower() not in SPLIT_ALIASES:
            raise UserError(f"{row[WHERE]}: split column '{column}' holds '{value}'; expected one of "
                            f"{', '.join(SPLIT_ALIASES)} (or empty: no split)")
        out[SPLIT_ALIASES[str(value).lower()]].append(number)
    return out


def edge_index(rows: list[dict], positions: dict[str, int], fields: tuple[str, str], nodes_file: str,
               node_field: str) -> torch.Tensor:
    """Edge rows -> (2,E) node positions; an id missing from the node table names the edge's line."""
    pairs = []
    for row in rows:
        pair = []
        for field in fields:
            name = str(field_value(row, field, "edge"))
            if name not in positions:
                raise UserError(f"{row[WHERE]}: {field} node '{name}' is not in the node table {nodes_file} "
                                f"(field '{node_field}')")
            pair.append(positions[name])
        pairs.append(pair)
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T  # (E,2) -> (2,E)


def table_arrays(data_cfg) -> GraphArrays:
    """The node and edge tables of `data.source` as the arrays every graph fills."""
    tables = read_tables(data_cfg)
    nodes_file, nodes = tables["nodes"]
    ids, positions = node_ids(nodes, data_cfg.graph.node_id)
    column = data_cfg.split.column
    return GraphArrays(
        features=GraphInput(data_cfg).features(nodes),
        edges=edge_index(tables["edges"][1], positions, data_cfg.graph.edge_fields, nodes_file,
                         data_cfg.graph.node_id),
        ids=ids, labels=[node_label(row, data_cfg.target.field) for row in nodes],
        splits=column_splits(nodes, column) if column else None, origin=nodes_file,
        where=[row[WHERE] for row in nodes])
