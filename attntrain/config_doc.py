"""`attntrain config show`: the fully resolved config as YAML, every key with its comment from config.py.

The comments are the ones written next to each field in attntrain/config.py (the single place they
live), read from the source, so the listing never drifts from the code.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from attntrain.config import Config, load_config

FIELD_COMMENT = re.compile(r"^\s{4}(\w+)\s*:[^#]*#\s?(.*)$")
FIELD_LINE = re.compile(r"^\s{4}(\w+)\s*:")
COMMENT_LINE = re.compile(r"^\s{4}#\s?(.*)$")


@lru_cache(maxsize=None)
def field_comments(cls: type[BaseModel]) -> dict[str, str]:
    """{field name: its comment} of a config section class: the comment on the field's line, else the
    comment lines right above it."""
    comments, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        if match := COMMENT_LINE.match(line):
            above.append(match.group(1).strip())
            continue
        field = FIELD_LINE.match(line)
        if field and field.group(1) in cls.model_fields:
            trailing = FIELD_COMMENT.match(line)
            comment = trailing.group(2).strip() if trailing else " ".join(above)
            if comment:
                comments[field.group(1)] = comment
        above = []
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


# ---------------------------------------------------------------------------------------------
# The configuration reference page (docs/configuration.md; scripts/config_reference.py writes it)

REFERENCE_HEADER = """# Configuration reference

Every key of a config file, section by section: its type, its default and what it does. This page is
generated from the config classes and the comment beside each field (`python scripts/config_reference.py`);
`tests/test_docs.py` and the docs build fail when it differs from the code. `attntrain config show CONFIG`
prints the same comments beside the values of one config, defaults included. Override any key on the
command line with `--set section.key=value`.
"""

BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _type_name(annotation) -> str:
    """A reader's name of a field's type: `int`, `list of str`, `pre | post`, `float or null`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return "any" if annotation is typing.Any else getattr(annotation, "__name__", str(annotation))


def _bounds(field) -> str:
    found = [f"{sign} {getattr(m, name)}" for m in field.metadata for name, sign in BOUNDS.items()
             if getattr(m, name, None) is not None]
    return f", {', '.join(found)}" if found else ""


def _section_of(annotation) -> tuple[type[BaseModel], str] | None:
    """(section class, what its key path adds) when a field holds a section, directly, optionally, as a mapping's
    values (`.<key>`) or as a list's items (`[i]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (dict, list):
        found = _section_of(args[-1])
        return (found[0], ".<key>" if origin is dict else "[i]") if found else None
    for arg in args if origin in (typing.Union, types.UnionType) else ():
        if (found := _section_of(arg)) is not None:
            return found
    return None


def _cell(text: str) -> str:
    """Table-cell text: no column breaks, no HTML tags, no emphasis."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def _default(field) -> str:
    if field.is_required():
        return "required"
    if isinstance(field.default, BaseModel):
        return ""
    return f"`{_scalar(field.default)}`"


def _reference_sections(cls: type[BaseModel], path: str, seen: dict) -> list[str]:
    """The table of one section, then the sections it holds (a section met again points to its first place)."""
    seen[cls] = path
    comments, rows, nested = field_comments(cls), [], []
    for name, field in cls.model_fields.items():
        description = comments.get(name) or field.description or ""
        found = _section_of(field.annotation)
        if found is not None:
            section, suffix = found
            child = f"{path}.{name}".lstrip(".") + suffix
            if section in seen:
                description += f" (the keys of `{seen[section]}`)"
            else:
                nested.append((section, child, description))
                description = f"{description}; keys: `{child}` below" if description else f"keys: `{child}` below"
        rows.append(f"| `{name}` | {_cell(_type_name(field.annotation) + _bounds(field))} | {_default(field)} | "
                    f"{_cell(description)} |")
    doc = (inspect.getdoc(cls) or "").split("\n")[0] if cls.__doc__ else ""
    lines = [f"## `{path}`" if path else "## top level", ""]
    if doc and not doc.startswith("Base"):
        lines += [_cell(doc), ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    for section, child, description in nested:
        if section not in seen:
            lines += _reference_sections(section, child, seen)
    return lines


def reference_markdown() -> str:
    """The configuration reference page: a table of every key (type, default, comment) per section."""
    return REFERENCE_HEADER + "\n" + "\n".join(_reference_sections(Config, "", {})).rstrip() + "\n"
