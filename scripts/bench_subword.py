"""Encoding translation text: the tokenizer on each whole text against `Subwords.encode_normalized` (word by word).

Both give the same ids (tests/test_subword.py). The text is Multi30k's training split, both sides (58,000
sentences), in batches of 2,000 as the seq2seq task encodes it; the BPE (8,000 symbols) is learned from the
same text first. Rounds take turns: the tokenizer on whole texts (`encode_batch` of whitespace-collapsed
text, the previous code), word by word with an empty word table ("cold": every distinct word is new to
it, as in a first run), and word by word again with the table filled ("warm"). CPU seconds of this
process, median over --repeats rounds.

    python scripts/bench_subword.py --repeats 3
Writes a Markdown table to stdout and bench_results/bench_subword.json.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
from pathlib import Path

from benchkit import REPO, cpu_seconds, interleaved, markdown_table, write_json

sys.path.insert(0, str(REPO))

from attntrain.data.sources.root import data_root  # noqa: E402
from attntrain.data.inputs.subword import Subwords, WordIds  # noqa: E402
from attntrain.data.tasks.translation import normalize_space  # noqa: E402

BATCH = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_subword.json")
    args = parser.parse_args()
    raw = data_root() / "multi30k" / "raw"
    texts = [line for lang in ("de", "en")
             for line in gzip.decompress((raw / f"train.{lang}.gz").read_bytes()).decode("utf-8").splitlines()]
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    bpe = Subwords.train([normalize_space(text) for text in texts], 8000)

    def whole():
        for batch in batches:
            bpe.encode_batch([normalize_space(text) for text in batch])

    def by_word():
        for batch in batches:
            bpe.encode_normalized(batch)

    def cold():
        bpe._words = WordIds()
        by_word()

    # Fixed order: the warm word-by-word pass finds the word cache the cold pass just filled.
    runs = {"whole texts": whole, "word by word, cold": cold, "word by word, warm": by_word}
    times = interleaved({name: (lambda run=run: cpu_seconds(run)) for name, run in runs.items()}, args.repeats,
                        order="fixed")
    base = statistics.median(times["whole texts"])
    print(f"{len(texts):,} sentences, batches of {BATCH:,}, CPU seconds (median of {args.repeats})\n")
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"encoding": name, "cpu_s": median, "speedup": base / median, "rounds": values})
    print(markdown_table(["encoding", "CPU s", "speed-up"],
                         [[r["encoding"], f"{r['cpu_s']:.2f}", f"{r['speedup']:.2f}x"] for r in rows], align="lrr"))
    write_json(args.out, {"sentences": len(texts), "batch": BATCH, "rows": rows})


if __name__ == "__main__":
    main()
