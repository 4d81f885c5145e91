"""Entity spans: seqeval metrics, constrained decoding, the CRF, a real WNUT-17 run, bad BIO input."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import torch

from attntrain.config import build_config
from attntrain.data.targets.spans import allowed_transitions, entities, format_spans, is_valid, span_scores
from attntrain.errors import UserError
from attntrain.model.crf import LinearChainCRF, viterbi
from attntrain.runs import eval_run, predict
from tests.conftest import cli_env, head_sentences, shared_data

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_span_scores_equal_a_hand_count():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"],  # PER right; LOC predicted as PER (type error)
            ["B-LOC", "O", "O", "B-PER"]]  # LOC boundary error (too short); PER right
    scores = span_scores(true, pred, "iob2")
    # true entities: PER(0,2) LOC(3,4) LOC(0,2) PER(3,4) = 4; predicted: PER PER LOC(0,1) PER = 4; correct: 2
    assert scores["precision"] == pytest.approx(50.0)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(50.0)
    assert scores["entities"] == 4
    per = scores["per_type"]
    assert per["PER"]["precision"] == pytest.approx(100 * 2 / 3) and per["PER"]["recall"] == pytest.approx(100.0)
    assert per["LOC"]["precision"] == pytest.approx(0.0) and per["LOC"]["support"] == 2


def test_strict_mode_does_not_count_an_entity_without_its_b_tag():
    scores = span_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]], "iob2")
    assert scores["f1"] == 0.0


def test_entities_and_span_text():
    tags = ["B-LOC", "I-LOC", "O", "B-PER", "B-PER", "I-PER"]
    tokens = ["Tampa", "Bay", "loves", "Ann", "Bo", "Li"]
    assert entities(tags, "iob2") == [("LOC", 0, 2), ("PER", 3, 4), ("PER", 4, 6)]
    assert format_spans(tokens, tags, "iob2") == "[Tampa Bay]LOC loves [Ann]PER [Bo Li]PER"
    assert entities(["S-X", "B-Y", "I-Y", "E-Y", "O"], "bioes") == [("X", 0, 1), ("Y", 1, 4)]


@pytest.mark.parametrize("scheme,tags", [("iob2", TAGS),
                                         ("bioes", ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"])])
def test_constrained_decoding_never_yields_an_invalid_sequence(scheme, tags):
    gen = torch.Generator().manual_seed(0)
    start, allowed, end = allowed_transitions(tags, scheme)
    penalty = lambda t: torch.where(t, 0.0, float("-inf"))  # noqa: E731
    invalid_argmax = 0
    for _ in range(50):
        B, T = 8, int(torch.randint(1, 12, (1,), generator=gen))
        scores = torch.randn(B, T, len(tags), generator=gen) * 3
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        mask = torch.arange(T)[None] < lengths[:, None]
        ids = viterbi(torch.log_softmax(scores, -1), mask, penalty(allowed), penalty(start), penalty(end))
        for row, n in zip(ids.tolist(), lengths.tolist()):
            assert is_valid([tags[i] for i in row[:n]], scheme)
        invalid_argmax += sum(not is_valid([tags[i] for i in row[:n]], scheme)
                              for row, n in zip(scores.argmax(-1).tolist(), lengths.tolist()))
    assert invalid_argmax > 0  # the property is not trivially true: plain argmax does break spans


def _enumerate(crf, emissions, length):
    transitions, start, end = crf.scores()
    L = emissions.shape[-1]
    scores = {}
    for path in itertools.product(range(L), repeat=length):
        s = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
        s = s + sum(transitions[a, b] + emissions[t + 1, b] for t, (a, b) in enumerate(zip(path, path[1:])))
        scores[path] = s
    return scores


def test_crf_likelihood_and_viterbi_equal_brute_force():
    torch.manual_seed(0)
    start, allowed, end = allowed_transitions(TAGS, "iob2")
    crf = LinearChainCRF(len(TAGS), start, allowed, end).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    B, T = 3, 4
    emissions = torch.randn(B, T, len(TAGS), dtype=torch.float64)
    lengths = torch.tensor([4, 2, 1])
    mask = torch.arange(T)[None] < lengths[:, None]
    tags = torch.randint(0, len(TAGS), (B, T))
    log_z = crf.log_partition(emissions, mask)
    best = crf.decode(emissions, mask)
    for b in range(B):
        n = int(lengths[b])
        scores = _enumerate(crf, emissions[b, :n], n)
        total = torch.logsumexp(torch.stack(list(scores.values())), 0)
        assert float(log_z[b]) == pytest.approx(float(total), rel=1e-9)
        path = tuple(tags[b, :n].tolist())
        own = crf.path_score(emissions[b:b + 1], tags[b:b + 1], mask[b:b + 1])
        assert float(own) == pytest.approx(float(scores[path]), rel=1e-9)
        assert tuple(best[b, :n].tolist()) == max(scores, key=lambda k: float(scores[k]))
    nll = crf.nll(emissions, tags, mask)
    assert float(nll) == pytest.approx(float((log_z - crf.path_score(emissions, tags, mask)).sum()))


@pytest.fixture(scope="module")
def wnut_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    folder = root / "wnut17"
    folder.mkdir()
    src = shared_data() / "wnut17"
    for name, count in (("wnut17train.conll", 1200), ("emerging.dev.conll", 300), ("emerging.test.annotated", 300)):
        head_sentences(src / name, folder / name, count)
    return root


def wnut_raw(root, runs, name="ner", **head):
    return {
        "name": name, "seed": 1, "runs_dir": str(runs),
        "data": {"root": str(root), "dataset": "wnut17", "max_tokens": 1500,
                 "source": {"format": "conll", "files": {"train": "wnut17train.conll", "dev": "emerging.dev.conll",
                                                         "test": "emerging.test.annotated"}},
                 "input": {"field": "tokens"}, "target": {"field": "tags"}},
        "model": {"embed": {"word_dim": 32, "char_dim": 16, "char_filters": 32, "dropout": 0.1},
                  "encoder": {"num_layers": 1, "width": 64, "num_heads": 4, "ffn_dim": 128, "dropout": 0.1},
                  "head": {"kind": "tagging", **head}},
        "train": {"lr": 3e-3, "warmup": 0.1, "max_steps": 120, "eval_every": 60, "log_every": 20, "metric": "f1",
                  "progress": False, "threads": 1},
    }


@pytest.fixture(scope="module")
def crf_run(wnut_root, tmp_path_factory):
    cfg = build_config(wnut_raw(wnut_root, tmp_path_factory.mktemp("runs"), crf=True), "test")
    return cfg, fit_config(cfg)


def fit_config(cfg):
    from attntrain.train.checkpoint import RunDir
    from attntrain.train.trainer import Trainer

    return Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()


def test_real_wnut_run_learns_entities_and_reloads_to_the_same_f1(crf_run):
    cfg, result = crf_run
    test = result.metrics["test"]
    assert test["f1"] > 0.0 and test["entities"] > 0
    assert set(test["per_type"]) <= {"person", "location", "group", "corporation", "product", "creative-work"}
    again = eval_run(result.run_dir, "test")
    assert again["f1"] == pytest.approx(test["f1"]) and again["precision"] == pytest.approx(test["precision"])
    saved = json.loads((cfg.run_dir() / "task.json").read_text())
    assert saved["target"]["scheme"] == "iob2"
    assert (cfg.run_dir() / "confusion_test.png").is_file()


def test_predict_prints_valid_spans(crf_run):
    cfg, result = crf_run
    [line] = list(predict(result.run_dir, ["I flew from Tampa Bay to see Taylor Swift"]))
    assert "/" not in line.replace("[", "").replace("]", "") or "[" in line  # spans, not word/TAG pairs
    assert line.replace("[", "").replace("]", "").split()[:2] == ["I", "flew"]


def test_plain_and_constrained_heads_train(wnut_root, tmp_path):
    for decode in ("argmax", "constrained"):
        raw = wnut_raw(wnut_root, tmp_path / "runs", name=decode, decode=decode)
        raw["train"]["max_steps"] = 20
        result = fit_config(build_config(raw, "test"))
        assert {"f1", "precision", "recall", "accuracy"} <= set(result.metrics["test"])
    # eval --set re-scores the argmax run with constrained decoding, beside (not over) its own figures
    run = tmp_path / "runs" / "argmax"
    own = json.loads((run / "eval_test.json").read_text())
    other = eval_run(run, "test", overrides=["model.head.decode=constrained"])
    assert json.loads((run / "eval_test.json").read_text()) == own
    assert json.loads((run / "eval_test@decode=constrained.json").read_text())["f1"] == pytest.approx(other["f1"])
    assert other["tokens"] == own["tokens"]


def test_the_outside_bias_trades_precision_for_recall_in_every_decoding():
    from attntrain.model.heads import TaggingHead

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 9, len(TAGS), generator=gen)
    logits[..., 0] += 2.0  # O is the likely tag, as in real data
    mask = torch.ones(16, 9, dtype=torch.bool)
    for decode, crf in (("argmax", False), ("constrained", False), ("constrained", True)):
        head = TaggingHead(8, len(TAGS), dropout=0.0, label_smoothing=0.0, tags=TAGS, scheme="iob2", decode=decode,
                           crf=crf)
        spans = []
        for bias in (3.0, 0.0, -3.0):
            head.set_outside_bias(bias)
            spans.append(int((head.decode(logits, mask) != 0).sum()))
        assert spans[0] < spans[1] < spans[2], (decode, crf, spans)
    plain = TaggingHead(8, 3, dropout=0.0, label_smoothing=0.0, tags=["NOUN", "VERB", "O"], scheme="none")
    plain.set_outside_bias(-5.0)  # no span tags: nothing to bias, even with a tag named O
    assert plain.outside is None


def test_outside_bias_dev_is_chosen_on_dev_saved_and_used_by_eval(wnut_root, tmp_path, capfd):
    raw = wnut_raw(wnut_root, tmp_path / "runs", name="biased", outside_bias="dev")
    raw["train"].update(max_steps=60, tensorboard=True)  # the decoding record goes to TensorBoard too
    cfg = build_config(raw, "test")
    result = fit_config(cfg)
    run = cfg.run_dir()
    [record] = [json.loads(line) for line in (run / "metrics.jsonl").open() if '"decoding"' in line]
    chosen, scores = record["outside_bias"], record["dev"]
    assert len(scores) == 8 and scores[str(chosen)] == max(scores.values())
    assert json.loads((run / "decoding.json").read_text()) == {"outside_bias": chosen}
    assert result.metrics["dev"]["f1"] == pytest.approx(scores[str(chosen)])  # the final figures use the choice
    assert eval_run(run, "dev")["f1"] == pytest.approx(scores[str(chosen)])  # and so does a later eval
    unbiased = eval_run(run, "dev", overrides=["model.head.outside_bias=0"])
    assert unbiased["f1"] == pytest.approx(scores["0.0"])
    assert eval_run(run, "dev", checkpoint="last")["f1"] >= 0  # the bias was chosen for best, not last: said
    assert "chosen on dev for best.safetensors, not for last" in capfd.readouterr().err
    (run / "decoding.json").unlink()  # as a run whose final evaluation never ran: 0, and said
    assert eval_run(run, "dev")["f1"] == pytest.approx(scores["0.0"])
    assert "no decoding.json in the run" in capfd.readouterr().err


def test_an_outside_bias_that_nothing_would_read_is_an_error(tmp_path):
    from attntrain.model.heads import build_tagging_head

    with pytest.raises(UserError, match="outside_bias applies to a tagging head's span tags, not to kind 'sequence'"):
        build_config({"model": {"head": {"kind": "sequence", "outside_bias": -1}}}, "x.yaml")
    upos = build_config({"model": {"head": {"kind": "tagging", "outside_bias": "dev"}}}, "x.yaml").model.head
    with pytest.raises(UserError, match="no span scheme or no O tag"):
        build_tagging_head(upos, {"num_labels": 3, "labels": ["NOUN", "VERB", "O"], "scheme": "none"}, 8)
    spans = build_tagging_head(upos, {"num_labels": 3, "labels": TAGS[:3], "scheme": "iob2"}, 8)
    assert spans.outside is None  # "dev": no bias until the run's final evaluation chooses one


@pytest.mark.parametrize("content,message", [
    ("a\tB-x\nb\tI-\n\n", "tag 'I-' is not valid IOB2"),
    ("a\tB-x\nb\n\n", "expected 2 columns"),
    ("a\tB-x\nb\tQ-x\n\n", "tag 'Q-x' is not valid IOB2"),
])
def test_bad_bio_input_names_file_and_line(tmp_path, content, message):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("train.txt", "dev.txt", "test.txt"):
        (folder / name).write_text("x\tO\ny\tB-x\n\n" + content if name == "train.txt" else "x\tO\n\n")
    raw = wnut_raw(tmp_path, tmp_path / "runs")
    raw["data"].update(dataset="d", source={"format": "conll", "files": {s: f"{s}.txt" for s in ("train", "dev", "test")}})
    raw["data"]["target"]["scheme"] = "iob2"
    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "attntrain", "fit", str(config)], capture_output=True, text=True,
                         env=cli_env())
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "train.txt:" in out.stderr  # file and line named


def test_token_and_tag_counts_must_match_in_jsonl(tmp_path):
    rows = [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["a", "b"], "tags": ["O"]}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    raw = wnut_raw(tmp_path, tmp_path / "runs")
    raw["data"].update(dataset=None, source={"format": "jsonl", "files": {"train": str(tmp_path / "train.jsonl")}})
    from attntrain.data import build_task

    task = build_task(build_config(raw, "test"))
    with pytest.raises(UserError, match=r"train.jsonl:2: 2 tokens but 1 tags"):
        task.prepare()


def test_compare_shows_entity_f1_first(crf_run):
    from attntrain.compare import compare_table, summarize_run

    _, result = crf_run
    markdown, _ = compare_table([summarize_run(result.run_dir)])
    header = markdown.splitlines()[0]
    assert "test f1" in header.lower() and header.lower().index("f1") < header.lower().index("accuracy")
    assert "entities" not in header
