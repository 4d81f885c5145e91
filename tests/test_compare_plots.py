"""`attntrain compare` pieces (run rows, tables, sweeps) and pictures (learning curves, attention maps),
on two tiny real runs trained by a sweep on the EWT slice."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml

from attntrain import plots
from attntrain.compare import compare_table, parse_vary, plan_sweep, summarize_run
from attntrain.errors import UserError
from attntrain.runs import load_run, summarise
from attntrain.sweep import run_sweep
from tests.conftest import tiny_raw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SENTENCE = "The quick brown fox jumps over the lazy dog."  # 10 tokens with the final period


def write_config(ewt_root: Path, folder: Path, **train) -> Path:
    """The tiny EWT config as a YAML file (sweeps start from a file), runs under folder/runs."""
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(ewt_root, folder / "runs", **train)))
    return path


@pytest.fixture(scope="module")
def sweep(ewt_root, tmp_path_factory):
    """Two tiny runs from one sweep: dot vs additive scoring (additive adds a vector per head)."""
    folder = tmp_path_factory.mktemp("sweep")
    config = write_config(ewt_root, folder, max_steps=10, eval_every=5, log_every=5)
    with pytest.MonkeyPatch.context() as patch:  # module scope: set the cache the autouse fixture would
        patch.setenv("ATTNTRAIN_CACHE", str(folder / "cache"))
        run_dirs = run_sweep(config, ["model.encoder.attention.score=dot,additive"])
    return config, run_dirs


def eval_test(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval_test.json").read_text())


def start_parameters(run_dir: Path) -> int:
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["kind"] == "start"
    return first["parameters"]


def png_shape(path: Path) -> tuple[int, ...]:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path).shape


# ---- sweeps ---------------------------------------------------------------------------------


def test_parse_vary_is_a_cartesian_product():
    assert parse_vary(["model.encoder.kind=transformer"]) == [["model.encoder.kind=transformer"]]
    assert parse_vary(["a.b=1,2", "c= x , y ,z"]) == [
        ["a.b=1", "c=x"], ["a.b=1", "c=y"], ["a.b=1", "c=z"],
        ["a.b=2", "c=x"], ["a.b=2", "c=y"], ["a.b=2", "c=z"],
    ]


@pytest.mark.parametrize("specs, bad, says", [
    (["model.encoder.num_heads"], "model.encoder.num_heads", "expected KEY=VALUE"),
    (["model.encoder.num_heads="], "model.encoder.num_heads=", "no values"),
    (["=1,2"], "=1,2", "key before '=' is empty"),
    (["train.lr=1e-3,,2e-3"], "train.lr=1e-3,,2e-3", "empty value"),
    (["train.lr=1e-3", "train.lr=2e-3"], "train.lr=2e-3", "already varied by 'train.lr=1e-3'"),
    (["name=a,b"], "name=a,b", "cannot be varied"),
])
def test_parse_vary_errors_quote_the_spec(specs, bad, says):
    with pytest.raises(UserError) as error:
        parse_vary(specs)
    assert repr(bad) in str(error.value) and says in str(error.value)


def test_plan_sweep_names_variants_and_rejects_bad_keys_before_training(ewt_root, tmp_path):
    config = write_config(ewt_root, tmp_path)
    plan = plan_sweep(config, ["model.encoder.num_heads=2,4", "train.lr=1e-3"])
    assert [name for name, _ in plan] == ["tiny-2-1e-3", "tiny-4-1e-3"]
    assert plan[0][1] == ["model.encoder.num_heads=2", "train.lr=1e-3", "name=tiny-2-1e-3"]
    with pytest.raises(UserError, match="num_layerz"):
        run_sweep(config, ["model.encoder.num_layers=1,2", "model.encoder.num_layerz=1"])
    with pytest.raises(UserError, match="num_layers"):  # a bad value of the last variant fails up front too
        run_sweep(config, ["model.encoder.num_layers=1,0"])
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_sweep_trains_each_variant_and_a_rerun_reuses_them(sweep):
    config, run_dirs = sweep
    assert [d.name for d in run_dirs] == ["tiny-dot", "tiny-additive"]
    before = [(d / "metrics.jsonl").read_text() for d in run_dirs]
    assert run_sweep(config, ["model.encoder.attention.score=dot,additive"]) == run_dirs
    assert [(d / "metrics.jsonl").read_text() for d in run_dirs] == before  # skipped, not retrained


def test_sweep_resumes_an_unfinished_variant_and_refuses_a_strangers_run(sweep, ewt_root, tmp_path):
    _, run_dirs = sweep
    config = write_config(ewt_root, tmp_path, max_steps=10, eval_every=5, log_every=5)
    copy = tmp_path / "runs" / "tiny-dot"
    shutil.copytree(run_dirs[0], copy)
    (copy / "eval_test.json").unlink()  # as if killed after the last checkpoint, before the final evaluation
    assert run_sweep(config, ["model.encoder.attention.score=dot"]) == [copy]
    assert eval_test(copy)["accuracy"] == pytest.approx(eval_test(run_dirs[0])["accuracy"])

    saved = yaml.safe_load((copy / "config.yaml").read_text())
    saved["train"]["lr"] = 0.5
    (copy / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(UserError, match="holds a different run"):
        run_sweep(config, ["model.encoder.attention.score=dot"])
    shutil.rmtree(copy / "checkpoints")
    (copy / "config.yaml").write_text(yaml.safe_dump({**saved, "train": {**saved["train"], "lr": 3e-3}}))
    (copy / "eval_dev.json").unlink()
    with pytest.raises(UserError, match="no checkpoint to resume"):
        run_sweep(config, ["model.encoder.attention.score=dot"])


# ---- compare --------------------------------------------------------------------------------


def test_compare_table_holds_each_runs_real_numbers(sweep):
    _, run_dirs = sweep
    rows = [summarize_run(d) for d in run_dirs]
    markdown, text = compare_table(rows)
    table = list(csv.DictReader(io.StringIO(text)))
    lines = markdown.splitlines()
    assert lines[0].startswith("| run | task | encoder | parameters | test accuracy |")
    assert len(lines) == 2 + len(run_dirs) and len(table) == len(run_dirs)
    parameters = [start_parameters(d) for d in run_dirs]
    assert parameters[1] == parameters[0] + 2 * 4 * 16  # additive: a 16-wide vector per head, 2 layers
    for run_dir, line, csv_row, count in zip(run_dirs, lines[2:], table, parameters):
        accuracy = eval_test(run_dir)["accuracy"]
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:5] == [run_dir.name, "ud_pos", f"transformer {run_dir.name.split('-')[1]}+softmax",
                             f"{count:,}", f"{accuracy:.2f}"]
        assert csv_row["run"] == run_dir.name and csv_row["parameters"] == str(count)
        assert csv_row["test accuracy"] == f"{accuracy:.2f}"
        dev = json.loads((run_dir / "eval_dev.json").read_text())["accuracy"]
        assert csv_row["dev accuracy"] == f"{dev:.2f}"
        assert csv_row["train s"] == f"{eval_test(run_dir)['train_seconds']:.0f}"
        assert float(csv_row["tokens/s"]) > 0 and float(csv_row["peak MiB"]) > 0


def test_summarize_run_tolerates_missing_pieces_and_rejects_non_runs(sweep, tmp_path):
    _, run_dirs = sweep
    partial = tmp_path / "partial"
    shutil.copytree(run_dirs[0], partial, ignore=shutil.ignore_patterns("eval_*.json"))
    row = summarize_run(partial)
    assert row["test"] == {} and row["peak_memory_mb"] is None
    dev_records = [json.loads(line) for line in (partial / "metrics.jsonl").read_text().splitlines()]
    best = max(r["accuracy"] for r in dev_records if r["kind"] == "eval")
    assert row["dev"] == {"accuracy": best}  # no eval_dev.json (an interrupted run): the best dev evaluation so far
    assert row["parameters"] == start_parameters(run_dirs[0])
    assert row["train_seconds"] > 0  # from the last `elapsed` of metrics.jsonl
    markdown, _ = compare_table([row])
    assert "| - |" in markdown
    with pytest.raises(UserError, match="not a run directory") as error:
        summarize_run(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_summarize_multi_seed_parent_reports_means_and_seed_count(sweep, tmp_path):
    _, run_dirs = sweep
    parent = tmp_path / "seeds"
    results = {}
    for seed, run_dir in enumerate(run_dirs, start=1):  # stand-ins for two seeds of one set-up
        shutil.copytree(run_dir, parent / f"seed-{seed}", ignore=shutil.ignore_patterns("checkpoints"))
        results[seed] = {s: json.loads((run_dir / f"eval_{s}.json").read_text()) for s in ("dev", "test")}
    (parent / "summary.json").write_text(json.dumps({"seeds": list(results), "runs": results,
                                                     "summary": summarise(results)}))
    row = summarize_run(parent)
    accuracies = [eval_test(d)["accuracy"] for d in run_dirs]
    assert row["seeds"] == 2 and row["name"] == "seeds"
    assert row["test"]["accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert row["test_std"]["accuracy"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2 ** 0.5)
    assert row["parameters"] == start_parameters(run_dirs[0])
    markdown, text = compare_table([row])
    assert f"{sum(accuracies) / 2:.2f} ± {row['test_std']['accuracy']:.2f}" in markdown
    assert list(csv.DictReader(io.StringIO(text)))[0]["seeds"] == "2"


# ---- pictures -------------------------------------------------------------------------------


def test_fit_draws_a_confusion_picture_beside_each_confusion_count_file(sweep):
    _, run_dirs = sweep
    counts = sorted(path.stem for path in run_dirs[0].glob("confusion_*.json"))
    assert counts == ["confusion_dev", "confusion_test"]
    assert sorted(path.stem for path in run_dirs[0].glob("confusion_*.png")) == counts


def test_learning_curves_png(sweep):
    _, run_dirs = sweep
    path = plots.learning_curves(run_dirs[0])
    assert path == run_dirs[0] / "learning_curves.png"
    width, height = plots.CURVES_SIZE
    assert png_shape(path) == (int(height * plots.DPI), int(width * plots.DPI), 4)


def test_attention_weights_follow_the_encoder(sweep):
    _, run_dirs = sweep
    _, task, model, device = load_run(run_dirs[0])
    tokens, layers = plots.attention_weights(model, task, SENTENCE, device)
    assert tokens == ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."]
    assert len(layers) == 2 and all(w.shape == (4, 10, 10) for w in layers)
    for weights in layers:  # softmax: every query's weights over the keys sum to one
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, 10))


def test_attention_map_layouts(sweep, tmp_path):
    _, run_dirs = sweep
    inch = plots.DPI
    side = plots.PANEL_INCHES  # 10 tokens: the fixed panel size
    one = plots.attention_map(run_dirs[0], SENTENCE, layer=1, head=2)
    assert one == run_dirs[0] / "attention_layer1_head2.png"
    assert png_shape(one) == ((side + plots.TITLE_INCHES) * inch, (side + plots.COLORBAR_INCHES) * inch, 4)
    grid = plots.attention_map(run_dirs[0], SENTENCE, out=tmp_path / "heads.png")
    assert grid == tmp_path / "heads.png"
    # 4 heads: one row of 4 panels, one shared colorbar
    assert png_shape(grid) == ((side + plots.TITLE_INCHES) * inch, (4 * side + plots.COLORBAR_INCHES) * inch, 4)
    assert not (run_dirs[0] / "attention_layer0.png").exists()


def test_attention_map_errors(sweep, monkeypatch):
    _, run_dirs = sweep
    with pytest.raises(UserError, match=r"2 layers; valid: 0\.\.1"):
        plots.attention_map(run_dirs[0], SENTENCE, layer=2)
    with pytest.raises(UserError, match=r"4 heads; valid: 0\.\.3"):
        plots.attention_map(run_dirs[0], SENTENCE, head=4)
    with pytest.raises(UserError, match="input is empty"):
        plots.attention_map(run_dirs[0], "   ")

    def without_attention(run_dir, **options):
        cfg, task, model, device = load_run(run_dir, **options)
        model.encoder = torch.nn.Identity()  # stands in for an encoder kind without attention
        return cfg, task, model, device

    monkeypatch.setattr(plots, "load_run", without_attention)
    with pytest.raises(UserError, match="model.encoder.kind: transformer"):
        plots.attention_map(run_dirs[0], SENTENCE)


def test_training_writes_confusion_counts_and_plots_draws_them(tmp_path):
    from attntrain.model.heads import SequenceMeter
    from attntrain.plots import confusion_pictures
    from attntrain.train.loop import save_artifacts

    meter = SequenceMeter(3)
    meter.confusion += torch.tensor([[2, 1, 0], [0, 3, 0], [1, 0, 4]])
    save_artifacts(tmp_path, "dev", meter, {"labels": ["a", "b", "c"]})
    assert json.loads((tmp_path / "confusion_dev.json").read_text())["matrix"][2] == [1, 0, 4]
    assert not list(tmp_path.glob("*.png"))  # the training floor draws nothing
    assert confusion_pictures(tmp_path, ["test"]) == []  # no counts for test: nothing drawn
    (png,) = confusion_pictures(tmp_path)
    assert png == tmp_path / "confusion_dev.png" and png.read_bytes()[:4] == b"\x89PNG"
