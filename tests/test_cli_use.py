"""Using a trained run from the command line: predict --format jsonl|tsv, eval --save-predictions,
config show, runs, shell completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml

from attntrain import runs
from attntrain.config import load_config
from attntrain.config_doc import show_config
from attntrain.runlist import list_runs, runs_table
from tests.conftest import REPO, cli_env

LINES = ["The dog barks .", "", "A new model beats the old one ."]


def cli(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attntrain", *args], capture_output=True, text=True, input=stdin,
                          env=cli_env(), cwd=REPO, timeout=120)


def test_predict_jsonl_and_tsv_are_aligned_with_the_input_lines(tagging_run, sequence_run):
    records = [json.loads(line) for line in runs.predict(tagging_run, LINES, fmt="jsonl")]
    assert [r["input"] for r in records] == LINES
    assert records[1] == {"input": ""}
    assert records[0]["tokens"] == ["The", "dog", "barks", "."] and len(records[0]["tags"]) == 4
    text = list(runs.predict(tagging_run, LINES))
    assert text[0] == " ".join(f"{w}/{t}" for w, t in zip(records[0]["tokens"], records[0]["tags"]))
    tsv = list(runs.predict(tagging_run, LINES, fmt="tsv"))
    assert tsv[0] == "input\ttokens\ttags"
    assert tsv[1].split("\t") == [LINES[0], "The dog barks .", " ".join(records[0]["tags"])]
    assert len(tsv) == 1 + len(LINES)

    done = cli("predict", str(sequence_run), "--format", "jsonl", "--top-k", "2", stdin="a great film\nawful\n")
    assert done.returncode == 0, done.stderr
    first, second = [json.loads(line) for line in done.stdout.splitlines()]
    assert first["input"] == "a great film" and second["input"] == "awful"
    assert [x["label"] for x in first["top_k"]] == sorted(first["probabilities"], key=lambda k: -first["probabilities"][k])
    done = cli("predict", str(sequence_run), "--format", "tsv", "a great film")
    assert done.stdout.splitlines()[0] == "input\tlabel\tprobability"
    assert done.stdout.splitlines()[1].split("\t")[1] == first["label"]
    done = cli("predict", str(sequence_run), "--format", "xml", "x")
    assert done.returncode == 2 and "unknown format 'xml'" in done.stderr


def test_eval_save_predictions_writes_one_record_per_example_in_order(tagging_run, translation_run):
    from attntrain.data import build_task
    from attntrain.runs import run_config

    metrics = runs.eval_run(tagging_run, "dev", save_predictions=True)
    records = [json.loads(line) for line in (tagging_run / "predictions_dev.jsonl").read_text().splitlines()]
    raw = build_task(run_config(tagging_run)).split_raw("dev")
    assert [r["index"] for r in records] == list(range(len(raw))) and len(raw) == 120
    assert all(r["tokens"] == ex["words"] and len(r["tags"]) == len(ex["words"]) for r, ex in zip(records, raw))
    correct = sum(t == g for r, ex in zip(records, raw) for t, g in zip(r["tags"], ex["upos"]))
    assert 100.0 * correct / metrics["tokens"] == metrics["accuracy"]  # the same predictions the metric counted

    done = cli("eval", str(translation_run), "--split", "test", "--save-predictions")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (translation_run / "predictions_test.jsonl").read_text().splitlines()]
    hypotheses = (translation_run / "hyp_test.txt").read_text(encoding="utf-8").splitlines()
    assert [r["translation"] for r in records] == hypotheses and len(records) == 10


def test_config_show_prints_every_default_with_its_comment_and_loads_back():
    text = show_config(REPO / "configs" / "pos_ewt.yaml", ["model.encoder.num_layers=2"])
    cfg = load_config(REPO / "configs" / "pos_ewt.yaml", ["model.encoder.num_layers=2"])
    assert yaml.safe_load(text) == cfg.to_dict()
    assert "    num_layers: 2  # " in text
    assert "  max_tokens: " in text and "# training batch size in (padded) tokens" in text
    assert "tensorboard: false  # also write scalars" in text  # a default the YAML never mentions
    done = cli("config", "show", "configs/pos_ewt.yaml", "--set", "model.encoder.widht=3")
    assert done.returncode == 2 and "widht" in done.stderr and "Traceback" not in done.stderr


def test_runs_lists_finished_and_stopped_runs(tagging_run, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(tagging_run, stopped)
    for path in stopped.glob("eval_*.json"):
        path.unlink()
    shutil.rmtree(stopped / "checkpoints")  # stopped before its first checkpoint: the records say where
    kept = [line for line in (stopped / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] != "final" and json.loads(line).get("step", 0) <= 20]
    (stopped / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    shutil.copytree(tagging_run, tmp_path / "done")
    (tmp_path / "not_a_run").mkdir()
    rows = {r["name"]: r for r in list_runs(tmp_path)}
    assert set(rows) == {"stopped", "done"}
    assert rows["done"]["status"] == "finished (max_steps)" and rows["stopped"]["status"] == "stopped at step 20"
    test = json.loads((tagging_run / "eval_test.json").read_text())["accuracy"]
    assert rows["done"]["test"] == test and rows["stopped"]["test"] is None
    dev = [json.loads(line) for line in (tagging_run / "metrics.jsonl").read_text().splitlines()]
    assert rows["done"]["best_dev"] == max(r["accuracy"] for r in dev if r["kind"] == "eval")
    table = runs_table(list(rows.values()))
    assert "stopped at step 20" in table and f"{test:.2f}" in table
    done = cli("runs", str(tmp_path))
    assert done.returncode == 0 and "ud_pos" in done.stdout and "finished" in done.stdout


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (the `attntrain` console script)."""
    env = {**cli_env(), "_ATTNTRAIN_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'attntrain'; "
                           "from attntrain.cli import main; main()"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_is_on():
    assert "--install-completion" in cli("--help").stdout
    assert complete("attntrain se") == ["serve"]
    assert "--format" in complete("attntrain predict --fo")
    assert complete("attntrain config s") == ["show"]
