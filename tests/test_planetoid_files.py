"""Planetoid's original ind.* files (Python 2 pickles) read without scipy and without running code: the same
arrays as cora_planetoid.npz; a global outside the whitelist, a damaged or a missing file is one error."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.sources.planetoid import read_planetoid
from attntrain.errors import UserError
from tests.conftest import REPO, cli_env, shared_data

CORA = shared_data() / "cora"


class Exploit:
    """Unpickling this would run `touch <marker>` through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def ind_folder(tmp_path):
    folder = tmp_path / "planetoid"
    shutil.copytree(CORA / "planetoid", folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def test_the_ind_files_give_the_npz_arrays_exactly():
    arrays = read_planetoid(CORA / "planetoid", "cora")
    with np.load(CORA / "cora_planetoid.npz", allow_pickle=False) as npz:
        for key in npz.files:
            assert np.array_equal(arrays[key], npz[key]), key
    assert arrays["features"].shape == (2708, 1433) and arrays["edge_index"].shape == (2, 10556)
    sizes = [len(arrays[key]) for key in ("train_idx", "val_idx", "test_idx")]
    assert sizes == [140, 500, 1000]


def test_task_planetoid_reads_the_ind_files_when_there_is_no_npz(tmp_path, ind_folder):
    """data.task planetoid on a folder with only planetoid/ind.cora.*; and data.source.format planetoid."""
    (tmp_path / "cora").mkdir()
    shutil.move(ind_folder, tmp_path / "cora" / "planetoid")
    from_npz = build_task(build_config({"data": {"task": "planetoid", "dataset": "cora"}}, "t")).arrays()
    from_ind = build_task(build_config({"data": {"task": "planetoid", "dataset": "cora", "root": str(tmp_path)}},
                                       "t")).arrays()
    source = {"data": {"source": {"format": "planetoid", "path": str(tmp_path / "cora" / "planetoid"), "name": "cora"},
                       "input": {"kind": "graph"}}, "model": {"head": {"kind": "tagging"}}}
    own = build_task(build_config(source, "t"))
    own.prepare()
    for arrays in (from_ind, own.arrays()):
        assert arrays.labels == from_npz.labels and arrays.splits == from_npz.splits
        assert np.array_equal(arrays.features.numpy(), from_npz.features.numpy())
        assert np.array_equal(arrays.edges.numpy(), from_npz.edges.numpy())
    assert "ind.cora" in from_ind.origin and own.classes[0] == "Theory"


def test_a_pickle_calling_a_global_is_refused_and_runs_nothing(tmp_path, ind_folder):
    marker = tmp_path / "ran"
    (ind_folder / "ind.cora.graph").write_bytes(pickle.dumps(Exploit(marker), protocol=2))
    with pytest.raises(UserError, match=r"ind.cora.graph: not a Planetoid pickle \(refused posix.system"):
        read_planetoid(ind_folder, "cora")
    assert not marker.exists()


def test_a_missing_or_damaged_file_is_named(ind_folder):
    (ind_folder / "ind.cora.ty").unlink()
    with pytest.raises(UserError, match=r"Planetoid file not found: .*ind.cora.ty$"):
        read_planetoid(ind_folder, "cora")
    (ind_folder / "ind.cora.ty").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match=r"ind.cora.ty: not a"):
        read_planetoid(ind_folder, "cora")


def test_fit_on_a_tampered_folder_is_one_error_line(tmp_path, ind_folder):
    marker = tmp_path / "ran"
    (ind_folder / "ind.cora.x").write_bytes(pickle.dumps(Exploit(marker), protocol=2))
    config = {"name": "p", "runs_dir": str(tmp_path / "runs"),
              "data": {"source": {"format": "planetoid", "path": str(ind_folder), "name": "cora"},
                       "input": {"kind": "graph"}},
              "model": {"head": {"kind": "tagging"}}, "train": {"max_steps": 1, "threads": 1, "progress": False}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "attntrain", "fit", str(tmp_path / "p.yaml")], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "ind.cora.x: not a Planetoid pickle (refused posix.system" in lines[0]
    assert not marker.exists()


def test_format_planetoid_needs_its_folder_and_name():
    with pytest.raises(UserError, match="format planetoid: give path"):
        build_config({"data": {"source": {"format": "planetoid", "path": "x"}, "input": {"kind": "graph"}}}, "t")
