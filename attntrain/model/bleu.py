"""Translation metrics: sacreBLEU's BLEU (cased and lowercased) and chrF on detokenised text.

Hypotheses are detokenised by the target tokenizer and scored against the raw reference lines, so
the figures are comparable with published sacreBLEU scores, and each comes with sacreBLEU's signature,
which names the tokenisation (`model.head.decoder.bleu_tokenize`: 13a by default; zh, ja-mecab or char
for languages written without spaces, where 13a sees a sentence as one word and BLEU is near 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from sacrebleu.metrics import BLEU, CHRF

from attntrain.io import atomic_write_text


def corpus_scores(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> tuple[dict, dict]:
    """BLEU, lowercased BLEU and chrF of a corpus, and their signatures (one reference per sentence); `tokenize`:
    sacreBLEU's tokeniser for BLEU."""
    scores, signatures = {}, {}
    bleus = (("bleu", BLEU(tokenize=tokenize)), ("bleu_lc", BLEU(lowercase=True, tokenize=tokenize)))
    for name, metric in (*bleus, ("chrf", CHRF())):
        scores[name] = metric.corpus_score(hypotheses, [references]).score
        signatures[f"{name}_signature"] = str(metric.get_signature())
    return scores, signatures


class TranslationMeter:
    """Collects detokenised hypotheses (in file order) and the teacher-forced loss of a split.

    compute() returns BLEU / chrF and, when the run directory is known, writes hyp_<split>.txt there
    (one hypothesis per line, in the order of the split's file).
    """

    settings = ("beam", "tokenize")  # the same on every process: not summed when several processes evaluate

    def __init__(self, detokenize: Callable[[list[int]], str], output_dir: Optional[str], *, tokenize: str = "13a"):
        self.detokenize = detokenize
        self.output_dir = output_dir
        self.tokenize = tokenize  # sacreBLEU's tokeniser for BLEU
        self.hypotheses: dict[int, str] = {}
        self.references: dict[int, str] = {}
        self.split: Optional[str] = None
        self.beam: Optional[int] = None
        self.loss_sum, self.batches = 0.0, 0

    def update(self, output, batch: dict, loss: Optional[torch.Tensor] = None) -> None:
        indices = batch.get("indices", range(len(self.hypotheses), len(self.hypotheses) + len(output.tokens)))
        for index, ids, reference in zip(indices, output.tokens, batch["references"]):
            self.hypotheses[index] = self.detokenize(ids)
            self.references[index] = reference
        self.split, self.beam = batch.get("split", self.split), output.beam
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def compute(self) -> dict:
        order = sorted(self.hypotheses)
        hypotheses = [self.hypotheses[i] for i in order]
        scores, signatures = corpus_scores(hypotheses, [self.references[i] for i in order], self.tokenize)
        out = {**scores, "beam": self.beam, "sentences": len(order)}
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        out.update(signatures)
        if self.output_dir is not None and self.split is not None and Path(self.output_dir).is_dir():
            atomic_write_text(Path(self.output_dir) / f"hyp_{self.split}.txt",
                              "".join(h + "\n" for h in hypotheses))
        return out
