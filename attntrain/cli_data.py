"""`attntrain data ...`: obtain datasets from their public sources, verify them, size or clear the cache."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

data_app = typer.Typer(no_args_is_help=True, help="Obtain and verify datasets.")


@data_app.command("fetch")
def data_fetch(
    names: List[str] = typer.Argument(..., help="Dataset names (folders), e.g. ud_en_ewt"),
    root: Optional[Path] = typer.Option(None, help="Data root to fill (default: the resolved data root)"),
    mirror: Optional[str] = typer.Option(None, help="Base URL replacing the public source (e.g. a local mirror)"),
):
    """Download datasets from their public sources and verify every file's sha256."""
    from attntrain.data.sources.fetch import fetch

    for name in names:
        folder = fetch(name, root=root, mirror=mirror)
        typer.echo(f"{name}: ok ({folder})")


@data_app.command("cache")
def data_cache(
    clear: bool = typer.Option(False, help="Delete the cached files (they are made again when next needed)"),
    older_than: Optional[float] = typer.Option(None, min=0, help="Only files not modified for this many days"),
):
    """Size of the data cache ($ATTNTRAIN_CACHE: parsed tables, Arrow rows, encoded splits, vocabularies)."""
    from attntrain.data.sources.root import ENV_CACHE, cache_usage

    usage = cache_usage(older_than, remove=clear)
    for kind, files, size in usage:
        typer.echo(f"{kind:<12} {files:>7} files {size / 2**20:>10.1f} MiB" + ("  deleted" if clear else ""))
    total = sum(size for _, _, size in usage)
    typer.echo(f"{'total':<12} {sum(f for _, f, _ in usage):>7} files {total / 2**20:>10.1f} MiB"
               + ("" if usage else f"  (no cache yet; ${ENV_CACHE} sets where it goes)"))


@data_app.command("verify")
def data_verify(
    names: List[str] = typer.Argument(..., help="Dataset names"),
    root: Optional[Path] = typer.Option(None, help="Data root (default: the resolved data root)"),
):
    """Check the sha256 of every file of the datasets against the manifest."""
    from attntrain.data.sources.fetch import verify

    for name in names:
        count = verify(name, root=root)
        typer.echo(f"{name}: {count} files ok")
