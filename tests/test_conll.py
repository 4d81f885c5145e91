"""CoNLL-U reading: real counts, errors with file and line, and the on-disk cache."""

from __future__ import annotations

import pytest

import attntrain.data.sources.conll as conll
from attntrain.errors import UserError
from tests.conftest import shared_data

SENTENCE = (
    "# sent_id = 1\n"
    "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
    "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"
    "3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_\n"
    "\n"
)


def test_real_dev_file_counts_match_its_readme():
    sentences = conll.read_conllu(shared_data() / "ud_en_ewt" / "en_ewt-ud-dev.conllu")
    assert len(sentences) == 2001
    assert sum(len(s["words"]) for s in sentences) == 25147
    assert {tag for s in sentences for tag in s["upos"]} == set(conll.UPOS)


def test_multiword_ranges_and_empty_nodes_are_skipped(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(SENTENCE)
    [sentence] = conll.read_conllu(path)
    assert sentence["words"] == ["do", "n't", "go"] and sentence["upos"] == ["AUX", "PART", "VERB"]
    assert set(sentence) >= {"xpos", "lemma", "deprel"}  # any column can be the tag


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("4\tthere\tthere\tADV\n", "expected 10 tab-separated CoNLL-U columns, found 4"),
        ("4\tthere\tthere\tADVERB\tRB\t_\t3\tadvmod\t_\t_\n", "unknown UPOS tag 'ADVERB'"),
        ("x\tthere\tthere\tADV\tRB\t_\t3\tadvmod\t_\t_\n", "invalid token ID 'x'"),
    ],
)
def test_malformed_line_reported_with_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.conllu"
    # Line numbers: SENTENCE has 7 lines (incl. blank), then a comment, then the bad line at 9.
    path.write_text(SENTENCE + "# sent_id = 2\n" + bad_line + "\n")
    with pytest.raises(UserError) as err:
        conll.read_conllu(path)
    assert str(err.value).startswith(f"{path}:9: ")
    assert message in str(err.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="CoNLL-U file not found"):
        conll.read_conllu(tmp_path / "nope.conllu")


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "a.conllu"
    path.write_text(SENTENCE * 3)
    first = conll.load_conllu_dataset(path)
    assert len(first) == 3

    def no_parse(_):
        raise AssertionError("parsed again instead of using the cache")

    original = conll.read_conllu
    monkeypatch.setattr(conll, "read_conllu", no_parse)
    second = conll.load_conllu_dataset(path)
    assert second.to_list() == first.to_list()
    path.write_text(SENTENCE)  # a changed file is parsed again
    monkeypatch.setattr(conll, "read_conllu", original)
    assert len(conll.load_conllu_dataset(path)) == 1
