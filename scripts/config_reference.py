"""Write docs/configuration.md, the configuration reference, from the config classes and their comments.

    python scripts/config_reference.py            # rewrite the page (after adding or changing a config field)
    python scripts/config_reference.py --check    # exit 1 when the page differs from the code (tests, docs build)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attntrain.config_doc import reference_markdown  # noqa: E402
from attntrain.io import atomic_write_text  # noqa: E402

PAGE = ROOT / "docs" / "configuration.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the page is stale")
    args = parser.parse_args()
    text = reference_markdown()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            sys.exit(f"{PAGE.relative_to(ROOT)} differs from the config classes: run python scripts/config_reference.py")
        return
    atomic_write_text(PAGE, text)
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
