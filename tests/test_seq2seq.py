"""Seq2seq translation: causal decoder, cached == uncached search, real training on a Multi30k slice,
tokenizer persistence, sacreBLEU scoring, configs, and awkward inputs (empty, over-long, missing files)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
import torch.nn.functional as F

from attntrain import runs
from attntrain.config import build_config, load_config
from attntrain.data import build_task
from attntrain.data.inputs.subword import BOS, EOS
from attntrain.data.tasks.translation import FILES
from attntrain.errors import UserError
from attntrain.model import build_model
from attntrain.model.bleu import corpus_scores
from attntrain.model.search import beam_search, greedy_search
from attntrain.model.seq2seq import CachedStepper, RecomputeStepper, smoothed_cross_entropy
from attntrain.train.checkpoint import RunDir
from attntrain.train.trainer import Trainer
from tests.conftest import REPO, cli_env, shared_data
from tests.test_encoders import VARIANTS as ENCODER_VARIANTS

COUNTS = {"train": 500, "dev": 40, "test": 40}


def head_lines(src: Path, dst: Path, count: int) -> None:
    with gzip.open(src, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(count)]
    with gzip.open(dst, "wt", encoding="utf-8") as f:
        f.writelines(lines)


@pytest.fixture(scope="module")
def m30k_root(tmp_path_factory) -> Path:
    """A data root with the first 500 train and 40 val / test2016 sentence pairs of Multi30k de-en."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "multi30k" / "raw"
    raw.mkdir(parents=True)
    for split, count in COUNTS.items():
        for lang in ("de", "en"):
            name = f"{FILES[split]}.{lang}.gz"
            head_lines(shared_data() / "multi30k" / "raw" / name, raw / name, count)
    return root


def tiny_raw(root: Path, runs_dir: Path, *, encoder: dict | None = None, decoder: dict | None = None,
             translation: dict | None = None, **train) -> dict:
    return {
        "name": "tiny_mt",
        "seed": 5,
        "runs_dir": str(runs_dir),
        "data": {"task": "translation", "root": str(root), "dataset": "multi30k", "max_tokens": 1200,
                 "translation": {"vocab_size": 1000, **(translation or {})}},
        "model": {
            "embed": {"dropout": 0.0},
            "encoder": {"num_layers": 2, "width": 64, "num_heads": 4, "ffn_dim": 128, "dropout": 0.0,
                        **(encoder or {})},
            "head": {"kind": "seq2seq", "label_smoothing": 0.1,
                     "decoder": {"num_layers": 2, "ffn_dim": 128, "dropout": 0.0, "beam_size": 4,
                                 "tie_embeddings": "all", **(decoder or {})}},
        },
        "train": {"lr": 3e-3, "warmup_steps": 10, "max_steps": 70, "eval_every": 70, "log_every": 10,
                  "metric": "bleu", "progress": False, "threads": 1, **train},
    }


@pytest.fixture(scope="module")
def trained(m30k_root, tmp_path_factory):
    """One short real training run (70 steps on 500 pairs), shared by the tests that read it."""
    cfg = build_config(tiny_raw(m30k_root, tmp_path_factory.mktemp("runs")), "test")
    result = Trainer(cfg, RunDir(cfg.run_dir()), resume=False).fit()
    return cfg, result


def random_model(root: Path, tmp_path: Path, **parts):
    """A randomly initialised model (and its task) on the slice; float64 so that search ties cannot flip."""
    torch.manual_seed(0)
    cfg = build_config(tiny_raw(root, tmp_path, **parts), "test")
    task = build_task(cfg)
    task.prepare()
    return task, build_model(cfg, task.info()).double().eval()


ATTENTION_VARIANTS = [
    {},
    {"position": "rotary"},
    {"position": "learned", "max_len": 200},
    {"attention": {"score": "additive", "normalize": "relu"}},
]


# ---- decoder ------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder", ATTENTION_VARIANTS, ids=["dot", "rotary", "learned", "additive-relu"])
def test_decoder_is_causal(m30k_root, tmp_path, encoder):
    """Changing a later target token leaves the decoder outputs at earlier positions unchanged."""
    task, model = random_model(m30k_root, tmp_path, encoder=encoder)
    batch = task.batch("dev", [0, 1, 2])
    memory = model.features(batch)
    head = model.head
    target = batch["target_in"].clone()
    before = head.decoder(head.embed_target(target), memory, batch["mask"])  # (B,T,D)
    target[:, 5:] = (target[:, 5:] + 7) % len(task.target)
    after = head.decoder(head.embed_target(target), memory, batch["mask"])
    torch.testing.assert_close(after[:, :5], before[:, :5], rtol=0, atol=1e-12)
    assert (after[:, 5:] - before[:, 5:]).abs().amax() > 1e-3  # the changed tokens do matter


@pytest.mark.parametrize("encoder", ATTENTION_VARIANTS, ids=["dot", "rotary", "learned", "additive-relu"])
def test_cached_steps_equal_the_full_pass(m30k_root, tmp_path, encoder):
    """Feeding the target one token at a time through the cache reproduces the full causal pass."""
    task, model = random_model(m30k_root, tmp_path, encoder=encoder)
    batch = task.batch("dev", [3, 4])
    memory, head = model.features(batch), model.head
    full = head.decoder(head.embed_target(batch["target_in"]), memory, batch["mask"])  # (B,T,D)
    cache = head.decoder.start(memory, batch["mask"])
    steps = [head.decoder.step(head.embed_target(batch["target_in"][:, t:t + 1]), cache)
             for t in range(batch["target_in"].shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("encoder", ATTENTION_VARIANTS, ids=["dot", "rotary", "learned", "additive-relu"])
def test_cached_and_uncached_search_give_identical_tokens_random_model(m30k_root, tmp_path, encoder):
    # An untrained model never says </s>: a short length limit keeps the uncached search cheap.
    task, model = random_model(m30k_root, tmp_path, encoder=encoder, decoder={"max_len_ratio": 0.6})
    batch = task.batch("dev", list(range(12)))
    memory = model.features(batch)
    for beam in (1, 4):
        cached = model.head.generate(memory, batch["mask"], beam=beam, cache=True)
        uncached = model.head.generate(memory, batch["mask"], beam=beam, cache=False)
        assert cached == uncached


def test_forced_length_cached_equals_uncached(m30k_root, tmp_path):
    """generate(length=N) runs N steps per sentence; the self-attention cache outgrows its first buffer."""
    task, model = random_model(m30k_root, tmp_path)
    batch = task.batch("dev", [0, 1, 2])
    memory = model.features(batch)
    for beam, tokens in ((1, 40), (3, 39)):  # beam search spends its last step on the forced </s>
        cached = model.head.generate(memory, batch["mask"], beam=beam, cache=True, length=40)
        assert cached == model.head.generate(memory, batch["mask"], beam=beam, cache=False, length=40)
        assert [len(ids) for ids in cached] == [tokens] * 3


class EagerToEnd:
    """A stepper whose every row prefers </s>, then token 5, then the rest alike."""

    def __init__(self, vocab: int = 8):
        self.device, self.output_ids = torch.device("cpu"), torch.arange(vocab)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(tokens.shape[0], len(self.output_ids), dtype=torch.float64)
        scores[:, EOS], scores[:, 5] = 2.0, 1.0
        return scores

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(tokens).log_softmax(-1)

    def expand(self, beams: int) -> None:
        pass

    def select(self, rows: torch.Tensor) -> None:
        pass


def test_min_lengths_ban_the_end_until_their_step():
    assert greedy_search(EagerToEnd(), [6, 6], bos=BOS, eos=EOS) == [[], []]
    assert greedy_search(EagerToEnd(), [6, 6], bos=BOS, eos=EOS, min_lengths=[3, 5]) == [[5] * 2, [5] * 4]
    assert beam_search(EagerToEnd(), [6, 6], bos=BOS, eos=EOS, beam=2, min_lengths=[3, 5]) == [[5] * 2, [5] * 4]


def test_cached_and_uncached_search_give_identical_tokens_trained_model(trained):
    cfg, _ = trained
    _, task, model, _ = runs.load_run(cfg.run_dir())
    model = model.double()
    batch = task.batch("test", list(range(COUNTS["test"])))
    memory = model.features(batch)
    outputs = {}
    for beam in (1, 5):
        for cache in (True, False):
            outputs[beam, cache] = model.head.generate(memory, batch["mask"], beam=beam, cache=cache)
        assert outputs[beam, True] == outputs[beam, False]
    assert outputs[1, True] != outputs[5, True]  # beam search is a different search, not greedy again
    lengths = [len(ids) for ids in outputs[5, True]]
    assert min(lengths) > 0 and len(set(lengths)) > 3  # the trained model ends sentences at varied lengths


def test_beam_of_one_is_greedy(trained):
    cfg, _ = trained
    _, task, model, _ = runs.load_run(cfg.run_dir())
    model = model.double()
    batch = task.batch("dev", list(range(20)))
    memory, head = model.features(batch), model.head
    limits = head.max_lengths(batch["mask"])
    greedy = greedy_search(CachedStepper(head, memory, batch["mask"]), limits, bos=BOS, eos=EOS)
    beam1 = beam_search(RecomputeStepper(head, memory, batch["mask"]), limits, bos=BOS, eos=EOS, beam=1)
    assert greedy == beam1
    assert all(len(ids) <= limit for ids, limit in zip(greedy, limits))


def test_fused_smoothed_loss_matches_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(60, 37, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 37, (60,))
    labels[::7] = -100
    for smoothing in (0.0, 0.1):
        ours = smoothed_cross_entropy(logits, labels, smoothing)
        reference = F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=smoothing)
        torch.testing.assert_close(ours, reference)
        grad_ours, = torch.autograd.grad(2 * ours, logits)
        grad_ref, = torch.autograd.grad(2 * reference, logits)
        torch.testing.assert_close(grad_ours, grad_ref)


def test_chunked_loss_over_target_subwords_matches_the_plain_loss(m30k_root, tmp_path, monkeypatch):
    """The head's loss (target-side softmax, padding skipped, chunks, in-place gradient) is plain cross-entropy."""
    import attntrain.model.seq2seq as seq2seq

    task, model = random_model(m30k_root, tmp_path)
    batch = task.batch("train", list(range(16)))
    head = model.head
    assert len(head.output_ids) < len(task.target)  # the softmax covers fewer ids than the vocabulary
    monkeypatch.setattr(seq2seq, "CHUNK_FLOATS", 50 * len(head.output_ids))  # 50 rows per chunk
    output = model(batch)["logits"]
    loss = head.loss(output, batch)
    labels = batch["labels"][batch["labels"] != -100]
    reference = F.cross_entropy(head.logits(output.states), head.label_column[labels], ignore_index=-100,
                                label_smoothing=head.label_smoothing)
    assert output.states.shape[0] == len(labels) > 150
    torch.testing.assert_close(loss, reference)
    grad, = torch.autograd.grad(loss, output.states)
    grad_ref, = torch.autograd.grad(reference, output.states)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("variant", range(len(ENCODER_VARIANTS)))
def test_every_encoder_variant_serves_as_source_encoder(m30k_root, tmp_path, variant):
    task, model = random_model(m30k_root, tmp_path, encoder=ENCODER_VARIANTS[variant],
                               decoder={"max_len_ratio": 0.5})
    model.train()
    batch = task.batch("train", list(range(6)))
    loss = model(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    tokens = model(task.batch("dev", [0, 1]))["logits"].tokens
    assert len(tokens) == 2


def test_embedding_tying_modes(m30k_root, tmp_path):
    _, tied_all = random_model(m30k_root, tmp_path, decoder={"tie_embeddings": "all"})
    assert tied_all.embed.table is tied_all.head.target_embed and tied_all.head.output is None
    _, tied_decoder = random_model(m30k_root, tmp_path, decoder={"tie_embeddings": "decoder"})
    assert tied_decoder.embed.table is not tied_decoder.head.target_embed and tied_decoder.head.output is None
    _, untied = random_model(m30k_root, tmp_path, decoder={"tie_embeddings": "none"})
    assert untied.head.output is not None
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tied_all) < count(tied_decoder) < count(untied)
    with pytest.raises(UserError, match="joint_vocab"):
        random_model(m30k_root, tmp_path, decoder={"tie_embeddings": "all"}, translation={"joint_vocab": False})
    task, separate = random_model(m30k_root, tmp_path, decoder={"tie_embeddings": "decoder"},
                                  translation={"joint_vocab": False})
    assert task.source is not task.target and separate.embed.table.num_embeddings == len(task.source)


# ---- training, evaluation, predict --------------------------------------------------------------

def test_training_loss_falls_and_bleu_is_reported(trained):
    cfg, result = trained
    records = [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 7 and losses[-1] < 0.75 * losses[0]
    for split in ("dev", "test"):
        metrics = result.metrics[split]
        assert 0.0 <= metrics["bleu"] <= 100.0 and metrics["chrf"] > 5.0
        assert "case:mixed" in metrics["bleu_signature"] and "case:lc" in metrics["bleu_lc_signature"]
        assert "tok:13a" in metrics["bleu_signature"] and metrics["sentences"] == COUNTS[split]
        hypotheses = (cfg.run_dir() / f"hyp_{split}.txt").read_text(encoding="utf-8").split("\n")
        assert len(hypotheses) == COUNTS[split] + 1 and hypotheses[-1] == ""
    assert result.metrics["dev"]["beam"] == 1 and result.metrics["test"]["beam"] == 4
    task_state = json.loads((cfg.run_dir() / "task.json").read_text())
    assert task_state["joint_vocab"] and task_state["source_tokenizer"]["model"]["type"] == "BPE"


def test_eval_rescores_the_same_hypotheses(trained):
    cfg, result = trained
    hyp_before = (cfg.run_dir() / "hyp_test.txt").read_text(encoding="utf-8")
    metrics = runs.eval_run(cfg.run_dir(), "test")
    assert metrics["bleu"] == pytest.approx(result.metrics["test"]["bleu"], abs=1e-9)
    assert (cfg.run_dir() / "hyp_test.txt").read_text(encoding="utf-8") == hyp_before
    greedy = runs.eval_run(cfg.run_dir(), "test", beam=1)
    assert greedy["beam"] == 1
    with pytest.raises(UserError, match="unknown split"):
        runs.eval_run(cfg.run_dir(), "validation")


def test_resumed_translation_run_equals_uninterrupted(m30k_root, tmp_path):
    """Stop after 6 steps, resume to 12: the reloaded tokenizer and optimizer give the same weights."""
    def config(name: str, steps: int):
        raw = tiny_raw(m30k_root, tmp_path, schedule="constant", max_steps=steps, eval_every=6, log_every=2)
        return build_config({**raw, "name": name}, "test")

    straight = config("straight", 12)
    Trainer(straight, RunDir(straight.run_dir()), resume=False).fit()
    Trainer(config("resumed", 6), RunDir(tmp_path / "resumed"), resume=False).fit()
    resumed = config("resumed", 12)
    trainer = Trainer(resumed, RunDir(resumed.run_dir()), resume=True)
    assert trainer.progress.step == 6
    trainer.fit()
    a, b = (load_file(str(RunDir(c.run_dir()).latest() / "model.safetensors")) for c in (straight, resumed))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_predict_handles_empty_and_overlong_input(trained):
    cfg, _ = trained
    long_line = "Ein Mann mit einem roten Hut fährt Fahrrad . " * 300  # ~3000 words, far over data.max_len
    outputs = list(runs.predict(cfg.run_dir(), ["Ein Mann fährt Fahrrad.", "", "   ", long_line, "日本 ✓"]))
    assert len(outputs) == 5
    assert outputs[1] == "" and outputs[2] == ""
    assert outputs[0] and "\n" not in outputs[0]
    _, task, model, _ = runs.load_run(cfg.run_dir())
    limit = model.head.max_lengths(torch.ones(1, cfg.data.max_len, dtype=torch.bool))[0]
    assert 0 < len(task.target.encode(outputs[3])) <= limit + 5  # the source was cut, the output bounded


def test_predict_one_at_a_time_answers_before_reading_on(trained):
    cfg, _ = trained
    read: list[str] = []

    def typed():  # a terminal: the next line exists only after the previous answer was printed
        for line in ["Ein Hund rennt.", "Zwei Frauen lachen."]:
            read.append(line)
            yield line

    stream = runs.predict(cfg.run_dir(), typed(), batch_size=1)
    first = next(stream)
    assert first and read == ["Ein Hund rennt."]
    assert next(stream) and len(read) == 2


def cli(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "attntrain", *args], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_predict_streams_lines_and_eval_prints_signature(trained, tmp_path):
    cfg, result = trained
    run_dir = str(cfg.run_dir())
    from_stdin = cli("predict", run_dir, stdin="Ein Hund rennt.\n\nZwei Frauen lachen.\n")
    assert from_stdin.returncode == 0, from_stdin.stderr
    lines = from_stdin.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[0] and lines[2] and lines[3] == ""
    evaluated = cli("eval", run_dir, "--split", "dev", "--beam", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in evaluated.stdout and "bleu_lc" in evaluated.stdout
    assert json.loads((cfg.run_dir() / "eval_dev.json").read_text())["beam"] == 2


# ---- vocabulary, metrics, configs, data errors ------------------------------------------------

def test_tokenizer_save_load_round_trip(m30k_root, tmp_path):
    cfg = build_config(tiny_raw(m30k_root, tmp_path), "test")
    task = build_task(cfg)
    task.prepare()
    sentences = [ex["source"] for ex in task.read_split("dev")] + [ex["target"] for ex in task.read_split("dev")]
    odd = ["  two  spaces ", "Straße, Ärger & Öl: 3,5 €!", "日本語 ✓ unseen characters", "", "a\tb"]
    tokenizer = task.source
    for text in sentences + odd:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    restored = build_task(cfg)
    restored.prepare(json.loads(json.dumps(task.state())))  # saved and loaded as task.json holds it
    assert [restored.source.encode(s) for s in sentences] == [tokenizer.encode(s) for s in sentences]
    assert restored.source.to_json() == tokenizer.to_json() and restored.output_ids == task.output_ids
    assert all(tokenizer.encode(s).count(1) == 0 for s in odd)  # byte-level: never <unk>


def test_bleu_of_references_against_themselves_is_100():
    references = ["A man rides a bike.", "Two dogs play in the snow.", "A woman is reading a book on a bench."]
    scores, signatures = corpus_scores(references, references)
    assert scores["bleu"] == pytest.approx(100.0) and scores["bleu_lc"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert signatures["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    lower, _ = corpus_scores([r.upper() for r in references], references)
    assert lower["bleu_lc"] == pytest.approx(100.0) and lower["bleu"] < 20.0


@pytest.mark.parametrize("name", ["multi30k_de_en.yaml", "multi30k_quick.yaml"])
def test_configs_validate(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.data.task == "translation" and cfg.model.head.kind == "seq2seq" and cfg.train.metric == "bleu"
    assert (REPO / "configs" / name).read_text().startswith(f"# attntrain fit configs/{name}")


def test_missing_file_and_misaligned_lines_are_user_errors(m30k_root, tmp_path):
    raw = tmp_path / "root" / "multi30k" / "raw"
    raw.mkdir(parents=True)
    cfg = build_config(tiny_raw(tmp_path / "root", tmp_path), "test")
    with pytest.raises(UserError, match=r"no file matches .*raw/train"):
        build_task(cfg).read_split("train")
    for stem in ("val", "test_2016_flickr"):
        for lang in ("de", "en"):
            head_lines(m30k_root / "multi30k" / "raw" / f"{stem}.{lang}.gz", raw / f"{stem}.{lang}.gz", 5)
    head_lines(m30k_root / "multi30k" / "raw" / "train.de.gz", raw / "train.de.gz", 10)
    with pytest.raises(UserError, match=r"neither .*train\.en nor .*train\.en\.gz exists"):
        build_task(cfg).read_split("train")
    for lang, count in (("de", 10), ("en", 9)):
        head_lines(m30k_root / "multi30k" / "raw" / f"train.{lang}.gz", raw / f"train.{lang}.gz", count)
    with pytest.raises(UserError, match=r"train\.en\.gz: 9 lines, but .*train\.de\.gz has 10"):
        build_task(cfg).read_split("train")
