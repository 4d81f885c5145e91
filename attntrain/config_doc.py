"""`attntrain config show`: the fully resolved config as YAML, every key with its comment from config.py.

The comments are the ones written next to each field in attntrain/config.py (the single place they
live), read from the source, so the listing never drifts from the code.
"""

from __future__ import annotations

import inspect
import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from attntrain.config import Config, load_config

FIELD_COMMENT = re.compile(r"^\s{4}(\w+)\s*:[^#]*#\s?(.*)$")


@lru_cache(maxsize=None)
def field_comments(cls: type[BaseModel]) -> dict[str, str]:
    """{field name: the comment on its line} of a config section class."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = FIELD_COMMENT.match(line)
        if match and match.group(1) in cls.model_fields:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _scalar(value) -> str:
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10_000).strip()[1:-1]


def _section_lines(section: BaseModel, values: dict, indent: int) -> list[str]:
    cls, pad = type(section), "  " * indent
    comments = field_comments(cls)
    lines = []
    for name in cls.model_fields:
        comment = f"  # {comments[name]}" if comments.get(name) else ""
        child = getattr(section, name)
        if isinstance(child, BaseModel):
            doc = (cls.model_fields[name].description or (inspect.getdoc(type(child)) or "").split("\n")[0])
            lines.append(f"{pad}{name}:{comment or (f'  # {doc}' if doc and not doc.startswith('Base') else '')}")
            lines.extend(_section_lines(child, values[name], indent + 1))
        else:
            lines.append(f"{pad}{name}: {_scalar(values[name])}{comment}")
    return lines


def render_config(cfg: Config) -> str:
    """YAML text of every key (defaults included), each followed by its comment; `yaml.safe_load` gives cfg back."""
    return "\n".join(_section_lines(cfg, cfg.to_dict(), 0))


def show_config(path: str | Path, overrides: list[str] = ()) -> str:
    """A YAML config file or a run directory (its saved config.yaml), with --set overrides applied."""
    path = Path(path)
    if path.is_dir():
        from attntrain.runs import run_config

        return render_config(run_config(path, list(overrides)))
    return render_config(load_config(path, list(overrides)))
