"""Tag sets known in advance, at the bottom of the data floor: the reader that checks them (conll) and the
preset that declares them (presets) both import from here, so neither imports the other."""

UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"]  # Universal POS tags (universaldependencies.org/u/pos)
