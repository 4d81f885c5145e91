"""data.input.tokenizer learned / auto: raw text given to predict / serve is cut at the training split's own
token boundaries (UD English `do n't`, `gon na`, `long - term`; UD French `l'` `homme`), saved with the run."""

from __future__ import annotations

import json

import pytest

from attntrain.config import build_config
from attntrain.data import build_task
from attntrain.data.inputs.kinds import TextInput
from attntrain.data.inputs.learned import LearnedTokenizer
from attntrain.data.inputs.text import tokenize as tokenize_english
from attntrain.errors import UserError
from attntrain.runs import predict
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import ewt_slice, tiny_raw

SENTENCE = "I don't think they're gonna come to the long-term meeting."
EWT_TOKENS = ["I", "do", "n't", "think", "they", "'re", "gon", "na", "come", "to", "the", "long", "-", "term",
              "meeting", "."]

FRENCH = [["l'", "homme", "mange", "."], ["j'", "aime", "l'", "eau", "."], ["l'", "homme", "qu'", "il", "voit", "."],
          ["aujourd'hui", ",", "l'", "enfant", "dort", "."], ["c'", "est", "l'", "été", "."]]


@pytest.fixture(scope="module")
def ewt_7400(tmp_path_factory):
    """A slice of EWT whose train split holds `gon na` three times (the third at sentence 7364)."""
    return ewt_slice(tmp_path_factory.mktemp("data"), train=7400)


def test_french_clitics_are_cut_as_the_training_tokens_are():
    learned = LearnedTokenizer.learn(FRENCH)
    assert learned.split("L'homme qu'il aime mange aujourd'hui.") == ["L'", "homme", "qu'", "il", "aime", "mange",
                                                                       "aujourd'hui", "."]
    assert learned.split("l'avion") == ["l'", "avion"]  # an unknown word after a known clitic
    assert tokenize_english("l'homme") == ["l", "'homme"]  # what the default was before
    restored = LearnedTokenizer.from_state(json.loads(json.dumps(learned.state())))
    assert restored.split("j'aime l'eau") == ["j'", "aime", "l'", "eau"]


def test_unknown_words_are_not_cut_into_known_pieces():
    learned = LearnedTokenizer.learn([["the", "man", "ran", "."], ["a", "man", "ran", "away", "."],
                                      ["the", "dog", "ran", "."]] * 3)
    assert learned.split("theman mandolin ran.") == ["theman", "mandolin", "ran", "."]
    assert "theman" not in learned.pairs and learned.pairs["ranaway"] == ["ran", "away", 3]  # away: after ran only
    assert learned.split("ranaway") == ["ran", "away"]


def test_ewt_predict_follows_the_treebank_and_the_run_keeps_it(ewt_7400, tmp_path):
    """Default `auto` on CoNLL-U: the run learns EWT's boundaries; predict reads them from the run alone."""
    raw = tiny_raw(ewt_7400, tmp_path / "runs", "learned", max_steps=2, eval_every=2)
    cfg = build_config(raw, "test")
    assert cfg.data.input.tokenizer == "auto"
    task = build_task(cfg)
    task.prepare()
    assert task.parse_inputs([SENTENCE])[0]["words"] == EWT_TOKENS
    assert tokenize_english(SENTENCE) != EWT_TOKENS  # the English regex keeps gonna and long-term
    Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert state["input"]["learned_tokenizer"]["pairs"]["gonna"][:2] == ["gon", "na"]
    for split in ("train", "dev", "test"):  # predict needs no data
        (ewt_7400 / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu").rename(tmp_path / f"{split}.conllu")
    try:
        line = next(predict(cfg.run_dir(), [SENTENCE], fmt="jsonl"))
    finally:
        for split in ("train", "dev", "test"):
            (tmp_path / f"{split}.conllu").rename(ewt_7400 / "ud_en_ewt" / f"en_ewt-ud-{split}.conllu")
    assert json.loads(line)["tokens"] == EWT_TOKENS


def test_a_saved_text_state_without_learned_boundaries_reads_as_english():
    """A run made before `auto` (or on text data) keeps no boundaries: auto is the English regex, as before."""
    cfg = build_config({"data": {"task": "ud_pos"}}, "test")
    text = TextInput(cfg.data, cfg.model.embed)
    text.prepare([], {"words": {"items": ["<pad>", "<unk>"], "unk": True}, "chars": {"items": ["<pad>"], "unk": True},
                      "seen": []})
    assert text.learned is None and text.tokens("l'homme don't") == ["l", "'homme", "do", "n't"]


def test_learned_on_text_data_is_one_error_naming_the_row(tmp_path):
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text('{"text": "a b", "label": "x"}\n{"text": "c d", "label": "y"}\n')
    files = {split: str(tmp_path / f"{split}.jsonl") for split in ("train", "dev")}
    data = {"source": {"format": "jsonl", "files": files},
            "input": {"field": "text", "tokenizer": "learned"}, "target": {"field": "label"}}
    task = build_task(build_config({"data": data, "model": {"head": {"kind": "sequence"}}}, "test"))
    with pytest.raises(UserError, match=r"train.jsonl:1: data.input.tokenizer learned .* field 'text' holds text"):
        task.prepare()
    data["input"]["tokenizer"] = "auto"  # auto on text: the English regex
    task = build_task(build_config({"data": data, "model": {"head": {"kind": "sequence"}}}, "test"))
    task.prepare()
    assert task.input_kind.learned is None and task.parse_inputs(["don't"])[0]["text"] == ["do", "n't"]
