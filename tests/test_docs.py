"""The docs cannot drift: the own-data walk-through runs, links resolve, the README stays short, the
configuration reference equals the code."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from attntrain.config import Config
from attntrain.config_doc import _section_of, field_comments, reference_markdown
from tests.conftest import REPO, cli_env

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# the walk-through at tiny sizes: a few rows per split, two optimizer steps per run, one thread
TINY_DATA = ["--limit", "40"]
TINY_FSDD = ["--limit", "6"]  # recordings 0-4 are test, 5 trains
TINY_FOLDS = 3
TINY_FIT = ["--set", "train.max_steps=2", "--set", "train.eval_every=2", "--set", "train.threads=1",
            "--set", "train.progress=false", "--set", "model.head.decoder.beam_size=1"]


def bash_blocks(path: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == "bash"]


def commands(block: str) -> list[str]:
    """The block's command lines: continuations joined, comment lines and trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def walkthrough() -> list[str]:
    """Every command of the own-data page's bash blocks that writes data or runs init / fit / predict."""
    wanted = ("python scripts/own_data_examples.py", "attntrain init", "attntrain fit", "attntrain predict")
    return [c for block in bash_blocks(DOCS / "own-data.md") for c in commands(block) if c.startswith(wanted)]


def tiny(command: str) -> list[list[str]]:
    """The argument lists to run for one line: a tiny data copy per layout, or the CLI with tiny overrides."""
    words = shlex.split(command)
    if words[0] == "python":
        assert words[2] == "--only" and len(words) > 3, command
        return [[words[1], "--only", layout, *(TINY_FSDD if layout == "fsdd_audio" else TINY_DATA)]
                for layout in words[3:]]
    if "--folds" in words:  # cross-validation: 3 folds of the tiny set instead of 10
        words[words.index("--folds") + 1] = str(TINY_FOLDS)
    return [[*words[1:], *(TINY_FIT if words[1] == "fit" else [])]]


def tiny_vectors(path: Path) -> None:
    """A gzipped word2vec text file of a few common words, 8 wide (seeded values)."""
    import gzip
    import random

    rng = random.Random(0)
    words = ["the", "a", "and", "of", "film", "movie", "good", "bad", "is", "it"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(f"{len(words)} 8\n" + "".join(f"{w} {' '.join(f'{rng.gauss(0, 1):.4f}' for _ in range(8))}\n"
                                             for w in words))


def run_inline(argv: list[str], monkeypatch) -> None:
    """A script or an attntrain command in this process (one torch import for the whole walk-through)."""
    if argv[0].endswith(".py"):
        monkeypatch.setattr(sys, "argv", [str(REPO / argv[0]), *argv[1:]])
        runpy.run_path(str(REPO / argv[0]), run_name="__main__")
        return
    from attntrain.cli import app

    code = app(args=argv, standalone_mode=False)
    assert not code, f"attntrain {' '.join(argv)}: exit code {code}"


def test_the_walkthrough_has_the_commands_of_the_readme_quick_start():
    steps = walkthrough()
    assert sum(c.startswith("attntrain fit") for c in steps) >= 6 and any("predict" in c for c in steps)
    quick_start = [commands(b) for b in bash_blocks(REPO / "README.md") if "scripts/own_data_examples.py" in b]
    assert len(quick_start) == 1 and quick_start[0] == steps[:len(quick_start[0])], \
        "the README's own-data quick start must be the docs walk-through's first block"


@pytest.mark.slow
def test_own_data_walkthrough_runs_at_tiny_sizes(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("ATTNTRAIN_DATA", cli_env()["ATTNTRAIN_DATA"])
    monkeypatch.chdir(tmp_path)
    for command in walkthrough():  # `make vectors-imdb` is not run: a tiny vector file (8 wide) stands in for it
        words = shlex.split(command)
        if "--vectors" in words:
            tiny_vectors(tmp_path / words[words.index("--vectors") + 1])
    for command in walkthrough():
        for argv in tiny(command):
            capsys.readouterr()
            run_inline(argv, monkeypatch)
        if command.startswith("attntrain predict"):
            path, label, probability = capsys.readouterr().out.split("\t")
            assert path.endswith("7_theo_3.wav") and label in {str(d) for d in range(10)} and 0 < float(probability) <= 1
    # every run of the walk-through trained and was evaluated on test
    runs = sorted(p.parent.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("eval_test.json"))
    assert {"my_sentiment", "my_digits", "multi30k_text", "sst2_text", "my_graph", "sst2_3k", "sst2_3k_vectors"} <= set(runs), runs
    assert sum(r.startswith("sst2_text/fold-") for r in runs) == TINY_FOLDS


def test_readme_is_at_most_300_lines_and_opens_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move sections to docs/"
    first = commands(bash_blocks(REPO / "README.md")[0])
    assert [c.split()[:2] for c in first] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files {broken}"


def test_every_doc_page_is_in_the_site_navigation():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert [p.name for p in DOCS.glob("*.md") if f": {p.name}" not in nav] == []


def test_configuration_reference_is_generated_from_the_code():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert page == reference_markdown(), "docs/configuration.md is stale: run python scripts/config_reference.py"


def test_every_config_key_has_a_comment_and_a_row():
    missing, rows = [], []

    def walk(cls, path: str, seen: set) -> None:
        seen.add(cls)
        for name, field in cls.model_fields.items():
            found = _section_of(field.annotation)
            if found and found[0] not in seen:
                walk(found[0], f"{path}{name}.", seen)
            elif not found and not (field_comments(cls).get(name) or field.description):
                missing.append(path + name)
            rows.append(name)

    walk(Config, "", set())
    assert missing == [], f"config fields without a comment beside them: {missing}"
    page = reference_markdown()
    assert all(f"| `{name}` |" in page for name in rows)

