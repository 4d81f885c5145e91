"""Name -> component lookup shared by every table (scores, positions, encoders, heads, tasks).

Each axis keeps one explicit dict in its own module; this helper only turns a failed lookup into a
user-facing error that lists the valid names.
"""

from __future__ import annotations

import difflib
from typing import Collection, Mapping, TypeVar

from attntrain.errors import UserError

T = TypeVar("T")


def suggest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def lookup(table: Mapping[str, T], name: str, axis: str) -> T:
    """Return table[name]; an unknown name is a UserError naming the axis and the valid names."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise UserError(f"{axis}: unknown choice '{name}'{suggest(name, table)}; valid: {valid}") from None


def check_choice(table: Collection[str], name: str) -> str:
    """Pydantic-validator form of `lookup` over a table's names (attntrain.choices): raises ValueError
    so the error carries the key path."""
    if name not in table:
        valid = ", ".join(sorted(table))
        raise ValueError(f"unknown choice '{name}'{suggest(name, table)}; valid: {valid}")
    return name
