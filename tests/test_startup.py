"""Start-up: `--help`, `validate` and config errors answer without importing torch or a data library.

Importing torch alone takes seconds, so these commands must never reach it. The checks are on the modules a
fresh process has loaded, never on time (speed lives in scripts/bench_startup.py). Config validation reads
the table names from attntrain.choices; the first tests keep those names equal to the real tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from attntrain import choices
from attntrain.cli import app

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))

# Top-level packages that take long to import; none may load for help, validation or a config error.
HEAVY = ("torch", "datasets", "transformers", "tokenizers", "safetensors", "matplotlib", "numpy", "pandas",
         "pyarrow", "scipy", "soundfile", "PIL", "onnx", "onnxruntime", "tensorboard", "tqdm")

# Runs each argv of a JSON list through the CLI's main in one fresh process; after each, records which
# heavy packages have been loaded so far and the exit code. The result goes to the file named by argv[2].
RUNNER = """
import json, sys
from attntrain.cli import main
heavy, calls, out = set(json.loads(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3]
results = []
for argv in calls:
    sys.argv = ["attntrain", *argv]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
    results.append({"argv": argv, "code": code, "loaded": loaded})
with open(out, "w") as f:
    json.dump(results, f)
"""


def run_cli(calls: list[list[str]], tmp_path: Path) -> tuple[list[dict], subprocess.CompletedProcess]:
    out = tmp_path / "startup.json"
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(HEAVY), json.dumps(calls), str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.is_file(), done.stderr
    return json.loads(out.read_text()), done


def assert_light(results: list[dict]) -> None:
    first = next((r for r in results if r["loaded"]), None)
    assert first is None, f"`attntrain {' '.join(first['argv'])}` imported {', '.join(first['loaded'])}"


# ---- the names equal the tables ---------------------------------------------------------------

def test_choices_equal_the_keys_of_the_tables():
    from attntrain.data import TASKS
    from attntrain.data.inputs.kinds import INPUT_KINDS, TOKENIZERS
    from attntrain.data.sources.readers import FORMATS
    from attntrain.model.attention import NORMALIZERS, SCORES
    from attntrain.model.embed import TEXT_VECTORS
    from attntrain.model.encoder import ENCODERS
    from attntrain.model.heads import HEADS
    from attntrain.model.positional import POSITIONS

    tables = {"SCORES": SCORES, "NORMALIZERS": NORMALIZERS, "TEXT_VECTORS": TEXT_VECTORS, "ENCODERS": ENCODERS,
              "POSITIONS": POSITIONS, "HEADS": HEADS, "FORMATS": FORMATS, "INPUT_KINDS": INPUT_KINDS,
              "TOKENIZERS": TOKENIZERS, "TASKS": TASKS}
    for name, table in tables.items():
        assert getattr(choices, name) == tuple(table), f"attntrain.choices.{name} differs from its table"
    assert tuple(choices.METRICS) == tuple(HEADS)


def test_task_labels_equal_the_presets_label_choices():
    from attntrain.data.tasks.presets import LABEL_CHOICES

    assert choices.TASK_LABELS == LABEL_CHOICES


def test_each_accepted_label_picks_a_target_field_of_its_preset():
    from attntrain.config import DataConfig
    from attntrain.data.tasks.presets import PRESETS

    for name, labels in choices.TASK_LABELS.items():
        fields = {label: PRESETS[name](DataConfig(task=name, label=label))["target"]["field"] for label in labels}
        assert all(fields[label] == label for label in labels if label != "default"), name
        assert fields["default"] in labels, name  # the default is one of the named labels


# ---- commands that must not import torch ------------------------------------------------------

def command_paths(command=None, prefix=()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI as a word path: (), ('fit',), ('data',), ('data', 'fetch'), ..."""
    command = command or typer.main.get_command(app)
    paths = [tuple(prefix)]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


def test_help_of_every_command_imports_no_torch(tmp_path):
    paths = command_paths()
    assert ("fit",) in paths and ("data", "fetch") in paths and ("config", "show") in paths
    results, done = run_cli([[*path, "--help"] for path in paths] + [[]], tmp_path)
    assert [r["code"] for r in results[:-1]] == [0] * len(paths), done.stderr
    assert "Usage" in done.stdout and "validate" in done.stdout
    assert_light(results)


def test_validate_every_shipped_config_imports_no_torch(tmp_path):
    results, done = run_cli([["validate", str(path)] for path in CONFIGS]
                            + [["config", "show", str(CONFIGS[0])]], tmp_path)
    assert [r["code"] for r in results] == [0] * len(results), done.stderr
    assert done.stdout.count(": ok (run directory") == len(CONFIGS)
    assert_light(results)


BAD = [  # (extra argv after the config, the message)
    (["--set", "model.encoder.num_haeds=4"], "did you mean 'num_heads'?"),
    (["--set", "train.lr=-1"], "train.lr: Input should be greater than 0"),
    (["--set", "model.encoder.kind=transfomer"], "did you mean 'transformer'?"),
    (["--set", "data.task=ud_poss"], "did you mean 'ud_pos'?"),
    (["--set", "train.metric=f1"], "train.metric: 'f1' is an entity score"),
    (["--set", "data.label=upos"], "data.label: task ud_pos has a single label"),
    (["--set", "data.dataset=no_such_folder"], "data.dataset"),
]


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_config_errors_exit_2_before_torch_is_imported(command, tmp_path):
    config = str(REPO / "configs" / "pos_ewt_quick.yaml")
    runs = f"runs_dir={tmp_path / 'runs'}"  # a fit that wrongly started would leave a run here
    calls = [[command, config, "--set", runs, *extra] for extra, _ in BAD]
    calls.append([command, str(tmp_path / "missing.yaml")])
    results, done = run_cli(calls, tmp_path)
    assert [r["code"] for r in results] == [2] * len(calls), done.stderr
    for _, message in BAD:
        assert message in done.stderr
    assert "config file not found" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
    assert_light(results)



def test_a_missing_run_directory_exits_2_before_torch_is_imported(tmp_path):
    missing, empty = str(tmp_path / "no_such_run"), tmp_path / "empty"
    empty.mkdir()
    calls = [["eval", missing], ["predict", missing, "a sentence"], ["attention", missing, "a sentence"],
             ["export", missing], ["serve", missing], ["fit", "--resume", missing], ["compare", missing],
             ["eval", str(empty)]]
    results, done = run_cli(calls, tmp_path)
    assert [r["code"] for r in results] == [2] * len(calls), done.stderr
    assert done.stderr.count(f"{missing}: no such run directory") == len(calls) - 1
    assert f"{empty} is not a run directory (no config.yaml)" in done.stderr
    assert_light(results)
