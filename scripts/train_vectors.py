"""Train word2vec vectors on shipped *training* text (never a dev or test sentence), for model.embed.vectors.

    python scripts/train_vectors.py --out runs/vectors/imdb_w2v_256.vec.gz     # IMDB train reviews, SST-2 spelling
    attntrain fit configs/sst2.yaml --set model.embed.vectors=runs/vectors/imdb_w2v_256.vec.gz

    python scripts/train_vectors.py --corpus imdb ewt wnut multi30k --spelling plain --dim 128 \\
        --out runs/vectors/english_w2v_128.vec.gz                              # ~7M tokens, for EWT / WNUT / IMDB

Corpora (train splits only; no labels are read): imdb (the 25,000 IMDB training reviews), ewt (UD English-EWT
train forms), wnut (WNUT-17 train tokens), multi30k (Multi30k English train captions), sst2 (SST-2 Kim train
sentences). Text is cut into words by attntrain's English tokenizer (do n't, like PTB) and lowercased.
`--spelling ptb` writes ( ) / as -lrb- -rrb- \\/ as SST-2's files do; `plain` keeps them. Needs gensim
(pip install gensim); the output is a word2vec text file, gzipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path

from attntrain.data.inputs.text import tokenize
from attntrain.data.sources.root import data_root
from attntrain.data.tasks.added import ptb_spelling

HTML_BREAK = re.compile(r"<br\s*/?>")
PTB_BACK = {"-lrb-": "(", "-rrb-": ")", "\\/": "/"}


def imdb() -> list[list[str]]:
    with gzip.open(data_root() / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        return [tokenize(HTML_BREAK.sub(" ", json.loads(line)["text"])) for line in f]


def column_sentences(path: Path, keep) -> list[list[str]]:
    """Sentences of a CoNLL-style file (blank line between them): the word of each line `keep` accepts."""
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append(words)
            words = []
        elif (word := keep(line.split("\t"))) is not None:
            words.append(word)
    return sentences + ([words] if words else [])


def ewt() -> list[list[str]]:
    def form(cols):  # word lines only: no comments, multiword ranges (1-2) or empty nodes (1.1)
        return cols[1] if len(cols) > 1 and cols[0].isdigit() else None
    return column_sentences(data_root() / "ud_en_ewt" / "en_ewt-ud-train.conllu", form)


def wnut() -> list[list[str]]:
    return column_sentences(data_root() / "wnut17" / "wnut17train.conll", lambda cols: cols[0] or None)


def multi30k() -> list[list[str]]:
    with gzip.open(data_root() / "multi30k" / "raw" / "train.en.gz", "rt", encoding="utf-8") as f:
        return [tokenize(line) for line in f if line.strip()]


def sst2() -> list[list[str]]:
    lines = (data_root() / "sst2" / "stsa_binary" / "stsa.binary.train").read_text(encoding="utf-8").splitlines()
    return [[PTB_BACK.get(word, word) for word in line.split()[1:]] for line in lines if line.strip()]


CORPORA = {"imdb": imdb, "ewt": ewt, "wnut": wnut, "multi30k": multi30k, "sst2": sst2}


def corpus(names: list[str], spelling: str) -> list[list[str]]:
    form = ptb_spelling if spelling == "ptb" else (lambda word: word)
    return [[form(word.lower()) for word in sentence] for name in names for sentence in CORPORA[name]()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vectors/imdb_w2v_256.vec.gz"))
    parser.add_argument("--corpus", nargs="+", choices=sorted(CORPORA), default=["imdb"])
    parser.add_argument("--spelling", choices=["ptb", "plain"], default="ptb")
    parser.add_argument("--dim", type=int, default=256, help="vector width (= model.embed.word_dim)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--skipgram", action="store_true", help="skip-gram instead of CBOW (slower)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from gensim.models import Word2Vec

    start = time.time()
    sentences = corpus(args.corpus, args.spelling)
    tokens = sum(map(len, sentences))
    print(f"{' + '.join(args.corpus)}: {len(sentences):,} texts, {tokens:,} tokens ({time.time() - start:.0f} s)")
    model = Word2Vec(sentences, vector_size=args.dim, window=args.window, min_count=args.min_count,
                     sg=int(args.skipgram), workers=args.threads, epochs=args.epochs, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.wv.save_word2vec_format(str(args.out), binary=False)
    print(f"{len(model.wv):,} words x {args.dim} -> {args.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
