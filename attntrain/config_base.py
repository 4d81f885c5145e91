"""The base of every config section (attntrain/config.py, attntrain/config_data.py): unknown keys rejected,
assignments validated, names checked against the tables of attntrain.choices."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from attntrain.registry import check_choice


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def choice_of(names: tuple[str, ...], field: str):
    """A validator that checks `field` against the names of a table (attntrain.choices: no torch import)."""
    return field_validator(field)(lambda cls, v: check_choice(names, v))
