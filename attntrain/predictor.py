"""One trained run, loaded once, answering raw inputs: the shared core of `predict`, `eval
--save-predictions` and the HTTP server.

Inputs go through three steps so that a server can check them before batching: `parse` (lines of
text, or pre-split tokens) -> examples; `encode` (one example -> tensors; None for an empty input);
`run` (encoded items of any origin -> one batch through the model -> predictions). `records` turns
predictions into JSON-ready dicts through the task's `record` hook; `lines` into the terminal text.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import torch

from attntrain.errors import UserError

EMPTY = None  # the encoded form of an empty input: no model call, an empty answer


class Predictor:
    """cfg, task, model (eval mode) and device of a run; `run` is the only place the model is called."""

    def __init__(self, cfg, task, model, device: torch.device):
        self.cfg, self.task, self.model, self.device = cfg, task, model, device
        self.seq2seq = hasattr(model.head, "generate")

    @classmethod
    def from_run(cls, run_dir: str | Path, *, checkpoint: str = "best", device: str | None = None,
                 overrides: list[str] = ()) -> "Predictor":
        from attntrain.train.restore import load_run

        return cls(*load_run(run_dir, checkpoint=checkpoint, device=device, overrides=overrides))

    # ---- inputs ------------------------------------------------------------------------------
    def parse(self, lines: list[str], *, pretokenized: bool = False) -> list[dict]:
        """Raw input lines (a sentence, or a file path / index for audio and image runs) -> examples.

        pretokenized: tokens are separated by spaces (the run's tokenizer is not applied)."""
        if pretokenized:
            return [self.from_tokens(line.split()) for line in lines]
        return self.task.parse_inputs(lines)

    def from_tokens(self, tokens: list[str]) -> dict:
        """Pre-split tokens -> an example: kept as they are for word-level text, joined by spaces otherwise."""
        if self.task.input == "text":
            parse_tokens = getattr(self.task, "parse_tokens", None)
            return parse_tokens(tokens) if parse_tokens else {"words": list(tokens)}
        if self.task.input == "subwords":
            return self.parse([" ".join(tokens)])[0]
        raise UserError(f"tokens: this run reads '{self.task.input}' input, not tokens")

    def encode(self, example: dict) -> Optional[dict]:
        """One example -> tensors (cut to the evaluation length cap), or EMPTY for an empty input."""
        if self.task.is_empty(example):
            return EMPTY
        return self.task.encode(example, max_len=self.task.eval_max_len())

    def check_beam(self, beam: Optional[int]) -> None:
        if beam is not None and not self.seq2seq:
            raise UserError(f"beam: only seq2seq runs search for their output; this run's head is "
                            f"'{self.cfg.model.head.kind}'")

    # ---- the model ---------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, items: list[dict], *, beam: Optional[int] = None) -> list[tuple[Any, Any]]:
        """Encoded items (none EMPTY) -> one batch -> [(prediction, scores)] in the same order.

        scores: the class probabilities of a sequence head, the mean log-probability per token of a
        translation (beam default: model.head.decoder.beam_size), None for tagging.
        """
        if not items:
            return []
        batch = _move(self.task.collate(items), self.device)
        head = self.model.head
        if self.seq2seq:
            memory = self.model.features(batch)  # (B,S,D)
            width = beam or head.search.beam_size
            outputs = head.generate(memory, batch["mask"], beam=width)
            return list(zip(outputs, head.score(memory, batch["mask"], outputs)))
        logits = self.model(batch)["logits"]
        predictions = head.predict(logits, batch)
        scores = head.probabilities(logits) if hasattr(head, "probabilities") else [None] * len(predictions)
        return list(zip(predictions, scores))

    def run_encoded(self, encoded: list[Optional[dict]], *, beam: Optional[int] = None,
                    batch_size: Optional[int] = None) -> list[Optional[tuple[Any, Any]]]:
        """Like `run` over any number of items, EMPTY ones answered None, `batch_size` per forward pass."""
        keep = [i for i, item in enumerate(encoded) if item is not EMPTY]
        size = batch_size or self.task.predict_batch_size
        out: list[Optional[tuple[Any, Any]]] = [None] * len(encoded)
        for start in range(0, len(keep), size):
            chunk = keep[start:start + size]
            for i, result in zip(chunk, self.run([encoded[i] for i in chunk], beam=beam)):
                out[i] = result
        return out

    # ---- outputs -----------------------------------------------------------------------------
    def record(self, example: dict, result: Optional[tuple[Any, Any]], *, top_k: Optional[int] = None) -> dict:
        """A JSON-ready dict of one answer ({} for an empty input); `top_k` adds the k most probable classes."""
        if result is None:
            return {}
        out = self.task.record(example, *result)
        if top_k and isinstance(out.get("probabilities"), dict):
            ranked = sorted(out["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
            out["top_k"] = [{"label": label, "probability": p} for label, p in ranked]
        return out

    def windows(self, example: dict) -> list[dict]:
        """A text input longer than data.max_len tokens: for a label per token, consecutive windows of
        data.max_len tokens (every token gets a label); for one label per input, the input as it is (it is
        cut to data.max_len as evaluation does, which is said on stderr)."""
        field = getattr(self.task, "input_field", "words")
        tokens, limit = example.get(field), self.cfg.data.max_len
        if self.task.input != "text" or not isinstance(tokens, list) or len(tokens) <= limit:
            return [example]
        if self.task.eval_max_len() is None:
            return [{**example, field: tokens[start: start + limit]} for start in range(0, len(tokens), limit)]
        print(f"an input of {len(tokens)} tokens: only {limit} are read (data.max_len)", file=sys.stderr)
        return [example]

    def answers(self, examples: list[dict], *, beam: Optional[int] = None,
                batch_size: Optional[int] = None) -> list[Optional[tuple[Any, Any]]]:
        """(prediction, scores) per example (None when empty); windows of a long input are joined."""
        self.check_beam(beam)
        parts = [(i, part) for i, ex in enumerate(examples) for part in self.windows(ex)]
        results = self.run_encoded([self.encode(part) for _, part in parts], beam=beam, batch_size=batch_size)
        joined: list[Optional[tuple[Any, Any]]] = [None] * len(examples)
        for (i, _), result in zip(parts, results):
            if result is None:
                continue
            if joined[i] is None:
                joined[i] = result
            else:  # the next window of a tagged input: its labels follow
                joined[i] = (joined[i][0] + result[0], None)
        return joined

    def records(self, examples: list[dict], *, beam: Optional[int] = None, top_k: Optional[int] = None,
                batch_size: Optional[int] = None) -> list[dict]:
        results = self.answers(examples, beam=beam, batch_size=batch_size)
        return [self.record(ex, r, top_k=top_k) for ex, r in zip(examples, results)]

    def lines(self, examples: list[dict], *, beam: Optional[int] = None, batch_size: Optional[int] = None) -> list[str]:
        """The terminal text of `attntrain predict` ('' for an empty input)."""
        results = self.answers(examples, beam=beam, batch_size=batch_size)
        return ["" if r is None else self.task.describe(ex, r[0]) for ex, r in zip(examples, results)]

    def info(self) -> dict:
        """What a client needs to know: task, input kind, head, labels, and a summary of the model."""
        from attntrain.model.build import count_parameters

        cfg, info = self.cfg, self.task.info()
        encoder = cfg.model.encoder
        from attntrain.compare import data_label  # the preset, or the dataset folder / format of own data

        out = {"task": data_label(cfg.data.model_dump(mode="json")), "input": self.task.input, "head": cfg.model.head.kind,
               "labels": info.get("labels"),
               "model": {"encoder": encoder.kind, "num_layers": encoder.num_layers, "width": encoder.width,
                         "num_heads": encoder.num_heads, "parameters": count_parameters(self.model)},
               "max_len": self.task.eval_max_len() or cfg.data.max_len, "device": str(self.device)}
        if self.seq2seq:
            search = cfg.model.head.decoder
            out["search"] = {"beam_size": search.beam_size, "length_penalty": search.length_penalty}
        return out


def _move(batch: dict, device: torch.device) -> dict:
    from attntrain.train.loop import move

    return move(batch, device)
