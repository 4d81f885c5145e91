"""A tokenizer learned from the training split's own tokens (data.input.tokenizer: learned, or auto on token data).

A run trained on text already split into tokens (CoNLL-U, BIO, token lists) should cut raw text given to
`predict` / `serve` as its training data was cut: UD French writes `l'` `homme`, UD English `do` `n't`,
`gon` `na`, `long` `-` `term`. What is learned from the train tokens (lower-cased), and saved with the run:

- forms: every token form and its count;
- pairs: two word tokens that (almost) always come together, never seen joined as one token (`gon` + `na`:
  every `gon` is followed by `na`), so that `gonna` is cut as train cuts it;
- split marks: punctuation that train writes alone between two words more often than inside a word
  (`-` in EWT: `long` `-` `term`), cut out of unknown words between letters.
A form that train writes joined less often than apart (one `they're` against many `they` `'re`) is dropped.

Raw text is split at spaces; each chunk is then cut by dynamic programming into the pieces of highest
unigram probability (known forms by their counts, a pair by its count, an unknown piece at the cost of a
form seen half a time). Pieces may only start and end where the English regex or a change between word and
punctuation characters puts a boundary, or inside a learned pair, so an unknown word is never cut into
known syllables. Deterministic, and fast: a chunk has few such boundaries.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable

from attntrain.data.inputs.text import _TOKEN as _ENGLISH

_ATOM = re.compile(r"\w+|[^\w\s]")  # runs of word characters, each other character alone
_NUMBER = re.compile(r"\d+(?:[,.]\d+)+")  # 1,200 and 5.00 (the English regex cuts at the comma)
_WORD = re.compile(r"\w")
_WORDS_ONLY = re.compile(r"\w+")
MAX_FORM = 40  # longest known form tried as a piece (characters)
MEMO_SIZE = 100_000  # chunks whose cut is remembered


def _is_word(char: str) -> bool:
    return bool(_WORD.match(char))


def _inner_cuts(form: str) -> list[int]:
    """Where a form may be cut inside: between word and other characters, and between two other characters."""
    return [i for i in range(1, len(form)) if not (_is_word(form[i - 1]) and _is_word(form[i]))]


def _between_words(left: str, right: str) -> bool:
    """Two word characters around a mark, one of them a letter (`long-term`, `15-year`; not `1,200`)."""
    return _is_word(left) and _is_word(right) and (left.isalpha() or right.isalpha())


class _MarkCounts:
    """Per punctuation mark: how often train writes it alone between two letter-final / letter-initial tokens
    (`long` `-` `term`) and inside a token between two words (`e-mail`)."""

    def __init__(self):
        self.alone, self.inside = Counter(), Counter()

    def count(self, tokens: list[str]) -> None:
        for before, token, after in zip(tokens, tokens[1:], tokens[2:]):
            if len(token) == 1 and not _is_word(token) and _between_words(before[-1], after[0]):
                self.alone[token] += 1
        for token in tokens:
            self.inside.update(char for left, char, right in zip(token, token[1:], token[2:])
                               if not _is_word(char) and _between_words(left, right))

    def split_marks(self) -> str:
        return "".join(sorted(mark for mark, count in self.alone.items() if count > self.inside[mark]))


class LearnedTokenizer:
    """split(line) -> tokens cut as the training split's tokens are; `state()` / `from_state()` for the run."""

    def __init__(self, forms: dict[str, int], pairs: dict[str, list], split_marks: str):
        self.forms, self.pairs, self.split_marks = forms, pairs, split_marks
        total = sum(forms.values()) or 1
        self.unknown_cost = math.log(2 * total)  # a form seen half a time
        self.cost = {form: math.log(total / count) for form, count in forms.items()}
        self.pair_cost = {joined: math.log(total / pair[2]) for joined, pair in pairs.items()}
        self.longest = min(MAX_FORM, max(map(len, [*forms, *pairs]), default=1))
        self.memo: dict[str, list[str]] = {}

    @classmethod
    def learn(cls, sentences: Iterable[list[str]]) -> "LearnedTokenizer":
        forms, adjacent, marks = Counter(), Counter(), _MarkCounts()
        for tokens in sentences:
            lowered = [token.lower() for token in tokens if token]
            forms.update(lowered)
            adjacent.update(zip(lowered, lowered[1:]))
            marks.count(lowered)
        # a form written joined far less often than apart is noise (EWT: one "they're" against 101 "they" "'re")
        kept = {form: count for form, count in sorted(forms.items())
                if not any(adjacent[form[:cut], form[cut:]] > 2 * count for cut in _inner_cuts(form))}
        pairs = {a + b: [a, b, count] for (a, b), count in sorted(adjacent.items())
                 if count >= 3 and _is_word(a[-1]) and _is_word(b[0]) and a + b not in forms
                 and count >= 0.9 * min(forms[a], forms[b])}
        return cls(kept, pairs, marks.split_marks())

    def state(self) -> dict:
        return {"forms": self.forms, "pairs": self.pairs, "split_marks": self.split_marks}

    @classmethod
    def from_state(cls, state: dict) -> "LearnedTokenizer":
        return cls(state["forms"], state["pairs"], state["split_marks"])

    def split(self, line: str) -> list[str]:
        out = []
        for chunk in line.split():
            tokens = self.memo.get(chunk)
            if tokens is None:
                tokens = self._chunk(chunk)
                if len(self.memo) < MEMO_SIZE:  # words repeat: most chunks of a long text are cut once
                    self.memo[chunk] = tokens
            out.extend(tokens)
        return out

    def _chunk(self, chunk: str) -> list[str]:
        lowered, size = chunk.lower(), len(chunk)
        if _WORDS_ONLY.fullmatch(chunk):  # no cut inside but a learned pair's
            pair = self.pairs.get(lowered)
            if pair is None or self.cost.get(lowered, self.unknown_cost) <= self.pair_cost[lowered]:
                return [chunk]
            return [chunk[:len(pair[0])], chunk[len(pair[0]):]]
        unknown = self._unknown_spans(chunk)
        cuts = sorted({0, size} | {i for span in unknown for i in span}
                      | {i for i in range(1, size) if not (_is_word(chunk[i - 1]) and _is_word(chunk[i]))})
        # best[i]: (cost, pieces, the cut before i, the piece chunk[start:i] as tokens) of chunk[:i]
        best: dict[int, tuple] = {0: (0.0, 0, None, [])}
        for start in cuts:
            if start not in best:
                continue
            for end in (cut for cut in cuts if start < cut):
                for cost, tokens in self._pieces(chunk, lowered, start, end, (start, end) in unknown):
                    entry = (best[start][0] + cost, best[start][1] + len(tokens), start, tokens)
                    if end not in best or entry[:2] < best[end][:2]:
                        best[end] = entry
        tokens, end = [], size
        while end:
            tokens[:0] = best[end][3]
            end = best[end][2]
        return tokens

    def _pieces(self, chunk: str, lowered: str, start: int, end: int, is_unknown_span: bool):
        """The ways chunk[start:end] may be one step of the path: (cost, tokens)."""
        if end - start > self.longest and not is_unknown_span:
            return
        piece = lowered[start:end]
        if piece in self.cost:
            yield self.cost[piece], [chunk[start:end]]
        elif is_unknown_span:
            yield self.unknown_cost, [chunk[start:end]]
        if piece in self.pair_cost:
            middle = start + len(self.pairs[piece][0])
            yield self.pair_cost[piece], [chunk[start:middle], chunk[middle:end]]

    def _unknown_spans(self, chunk: str) -> set[tuple[int, int]]:
        """Where an unknown piece may stand: the English regex's tokens (unless they hold a split mark between
        word characters), numbers, and the runs of word characters / single other characters."""
        spans = {match.span() for pattern in (_ATOM, _NUMBER) for match in pattern.finditer(chunk)}
        for match in _ENGLISH.finditer(chunk):
            text = match.group()
            if not any(char in self.split_marks and _between_words(left, right)
                       for left, char, right in zip(text, text[1:], text[2:])):
                spans.add(match.span())
        return spans
