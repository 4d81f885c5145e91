"""Run directories written before the data floor was split by axis (commit 78c2cec: attntrain/data/*.py in one
folder) still load and evaluate to the same figures: a run stores no module path (config.yaml, task.json and
safetensors only), and this holds it.

tests/fixtures/run_78c2cec was trained by that commit's code (sst2 preset, 200 training sentences, 50 dev / test,
a 1-layer width-16 encoder, 6 steps; config.yaml's runs_dir made relative, nothing else changed), then evaluated
on dev with its predictions saved:
    ATTNTRAIN_DATA=/work/shared/data python -m attntrain fit old_run.yaml
    python -c "from attntrain.runs import eval_run; eval_run('runs/old_layout', 'dev', save_predictions=True)"
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_data

FIXTURE = Path(__file__).parent / "fixtures" / "run_78c2cec"


@pytest.fixture
def old_run(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ATTNTRAIN_DATA", str(shared_data()))
    run = tmp_path / "runs" / "old_layout"
    shutil.copytree(FIXTURE, run)
    return run


@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_run_of_the_one_folder_data_floor_evaluates_to_its_own_figures(old_run, split):
    from attntrain.runs import eval_run

    before = json.loads((FIXTURE / f"eval_{split}.json").read_text())
    after = eval_run(old_run, split)
    assert after["examples"] == before["examples"] == 50
    assert after["accuracy"] == before["accuracy"]
    assert after["macro_f1"] == pytest.approx(before["macro_f1"], abs=1e-9)
    assert after["loss"] == pytest.approx(before["loss"], abs=1e-5)


def test_a_run_of_the_one_folder_data_floor_predicts_as_it_did(old_run):
    """predictions_dev.jsonl of the fixture: written by `eval_run(..., save_predictions=True)` at 78c2cec."""
    from attntrain.runs import eval_run

    eval_run(old_run, "dev", save_predictions=True)
    read = lambda folder: [json.loads(line) for line in (folder / "predictions_dev.jsonl").read_text().splitlines()]  # noqa: E731
    before, after = read(FIXTURE), read(old_run)
    assert len(after) == len(before) == 50
    for old, new in zip(before, after):
        assert {k: new[k] for k in ("index", "input", "gold", "label")} == {k: old[k] for k in ("index", "input", "gold", "label")}
        assert new["probabilities"] == pytest.approx(old["probabilities"], abs=1e-6)
