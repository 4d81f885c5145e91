"""mkdocs hook: the build stops when docs/configuration.md differs from the config classes it is made from."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]


def on_pre_build(config, **kwargs) -> None:
    sys.path.insert(0, str(ROOT))
    from attntrain.config_doc import reference_markdown

    page = ROOT / "docs" / "configuration.md"
    if page.read_text(encoding="utf-8") != reference_markdown():
        raise PluginError("docs/configuration.md differs from the config classes: run python scripts/config_reference.py")
