"""Train word2vec vectors on the IMDB training reviews, spelled as SST-2's files spell text, for model.embed.vectors.

    python scripts/train_vectors.py --out runs/vectors/imdb_w2v_256.vec.gz     # ~6M tokens; a few minutes, 1 thread
    attntrain fit configs/sst2.yaml --set model.embed.vectors=runs/vectors/imdb_w2v_256.vec.gz

Only IMDB *train* text is read (no labels are used, and nothing of SST-2). Reviews are cut into words by
attntrain's English tokenizer (do n't, like PTB), lowercased, with ( ) / written -lrb- -rrb- \\/ as in the
SST-2 files. Needs gensim (pip install gensim); the output is a word2vec text file, gzipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path

from attntrain.data.tasks.generic import ptb_spelling
from attntrain.data.sources.root import data_root
from attntrain.data.inputs.text import tokenize

HTML_BREAK = re.compile(r"<br\s*/?>")


def reviews(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    return [[ptb_spelling(word) for word in tokenize(HTML_BREAK.sub(" ", text))] for text in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vectors/imdb_w2v_256.vec.gz"))
    parser.add_argument("--dim", type=int, default=256, help="vector width (= model.embed.word_dim)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from gensim.models import Word2Vec

    start = time.time()
    sentences = reviews(data_root() / "imdb" / "train.jsonl.gz")
    tokens = sum(map(len, sentences))
    print(f"{len(sentences):,} reviews, {tokens:,} tokens ({time.time() - start:.0f} s)")
    model = Word2Vec(sentences, vector_size=args.dim, window=args.window, min_count=args.min_count, sg=0,
                     workers=args.threads, epochs=args.epochs, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.wv.save_word2vec_format(str(args.out), binary=False)
    print(f"{len(model.wv):,} words x {args.dim} -> {args.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
