"""Entity spans of tag sequences (IOB2 / BIOES): which tag may follow which, spans, and span metrics.

Metrics are computed by `seqeval` (the field's reference implementation) in strict mode: an entity
counts only when its type and both boundaries match. `allowed_transitions` is the rule that
constrained decoding and the CRF use so that output tags always form valid spans.

# L number of tags
"""

from __future__ import annotations

import torch


def split_tag(tag: str) -> tuple[str, str]:
    """'B-person' -> ('B', 'person'); 'O' -> ('O', '')."""
    prefix, _, kind = tag.partition("-")
    return (prefix, kind) if kind else ("O", "")


def allowed_transitions(tags: list[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start (L,), transition (L,L) [previous, next], end (L,)) bool tables of what a valid sequence may do.

    IOB2: I-X only after B-X or I-X. BIOES: additionally a span opened by B-X must close with E-X, and
    S-/B-/O may follow only O, E- or S-.
    """
    L = len(tags)
    parts = [split_tag(t) for t in tags]
    start, end = torch.ones(L, dtype=torch.bool), torch.ones(L, dtype=torch.bool)
    allowed = torch.ones(L, L, dtype=torch.bool)
    if scheme == "none":
        return start, allowed, end
    for j, (p_next, k_next) in enumerate(parts):
        inside = p_next in ("I", "E")
        start[j] = not inside
        for i, (p_prev, k_prev) in enumerate(parts):
            open_prev = p_prev in ("B", "I")
            if inside:  # continues a span: previous must be open and of the same type
                allowed[i, j] = p_prev in ("B", "I") and k_prev == k_next
            elif scheme == "bioes":  # O, B-, S- need the previous span closed
                allowed[i, j] = not open_prev
    if scheme == "bioes":
        end = torch.tensor([p not in ("B", "I") for p, _ in parts])
    return start, allowed, end


def is_valid(tags: list[str], scheme: str) -> bool:
    """Whether a tag sequence obeys allowed_transitions."""
    if scheme == "none" or not tags:
        return True
    index = {t: i for i, t in enumerate(sorted(set(tags)))}
    names = list(index)
    start, allowed, end = allowed_transitions(names, scheme)
    ids = [index[t] for t in tags]
    return bool(start[ids[0]] and end[ids[-1]] and all(allowed[a, b] for a, b in zip(ids, ids[1:])))


def entities(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """(type, start, end exclusive) of each span; a tag that breaks the scheme ends the span before it."""
    spans, kind, begin = [], None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, k = split_tag(tag)
        continues = kind is not None and prefix in ("I", "E") and k == kind
        if kind is not None and not continues:
            spans.append((kind, begin, i))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            kind, begin = k, i
        if prefix in ("E", "S") and kind is not None:
            spans.append((kind, begin, i + 1))
            kind = None
    return spans


def format_spans(tokens: list[str], tags: list[str], scheme: str) -> str:
    """'[Tampa Bay]location is nice' -style text of a tagged sentence."""
    out, cursor = [], 0
    for kind, start, end in entities(tags, scheme):
        out.extend(tokens[cursor:start])
        out.append(f"[{' '.join(tokens[start:end])}]{kind}")
        cursor = end
    out.extend(tokens[cursor:])
    return " ".join(out)


def span_scores(true: list[list[str]], predicted: list[list[str]], scheme: str) -> dict:
    """Entity precision / recall / F1 (x100) overall and per type, by seqeval in strict mode."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    mode = {"iob2": IOB2, "bioes": IOBES}[scheme]
    report = classification_report(true, predicted, mode="strict", scheme=mode, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    out = {"precision": 100 * float(micro["precision"]), "recall": 100 * float(micro["recall"]),
           "f1": 100 * float(micro["f1-score"]), "entities": int(micro["support"])}
    out["per_type"] = {k: {"precision": 100 * float(v["precision"]), "recall": 100 * float(v["recall"]),
                           "f1": 100 * float(v["f1-score"]), "support": int(v["support"])}
                       for k, v in report.items() if not k.endswith(" avg")}
    return out
