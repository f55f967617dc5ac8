"""``geomind weights list|download|path``: the official TerraMind files in the Hugging Face cache."""

from __future__ import annotations

from typing import Annotated

import typer

from geomind_cli.cli.options import examples

app = typer.Typer(help="Manage the official TerraMind weights (Hugging Face cache, HF_HOME, HF_HUB_OFFLINE).",
                  no_args_is_help=True)

Names = Annotated[
    list[str],
    typer.Argument(help="Sizes (tiny, small, base, large) and tokenizers (S2L2A, S1GRD, S1RTC, DEM, LULC, NDVI). "
                   "Default: base and every tokenizer.", show_default=False),
]


def _select(names: list[str] | None) -> dict[str, tuple[str, str]]:
    from geomind_cli.errors import InputError
    from geomind_cli.models.weights import official_files

    files = official_files()
    if not names:
        return {k: v for k, v in files.items() if k not in ("tiny", "small", "large")}
    unknown = [n for n in names if n not in files]
    if unknown:
        raise InputError(f"unknown weights {', '.join(unknown)}; choose from {', '.join(files)}")
    return {n: files[n] for n in names}


@app.command("list", epilog=examples("geomind weights list", "HF_HOME=/data/hf geomind weights list   # another cache"))
def list_weights() -> None:
    """Show every official file, its repository and whether it is in the local cache."""
    from rich.console import Console
    from rich.table import Table

    from geomind_cli.models.weights import is_cached, official_files

    table = Table("name", "repository", "file", "local cache")
    for name, (repo, filename) in official_files().items():
        path = is_cached(repo, filename)
        table.add_row(name, repo, filename, str(path) if path else "[dim]not cached[/dim]")
    Console().print(table)


@app.command("download", epilog=examples(
    "geomind weights download                     # base and every tokenizer",
    "geomind weights download tiny S1GRD LULC     # just what a small test run needs",
))
def download(names: Names = None) -> None:
    """Download official files into the Hugging Face cache (needs network access)."""
    from geomind_cli.models.weights import hub_file

    for name, (repo, filename) in _select(names).items():
        print(f"{name}: {hub_file(repo, filename)}")


@app.command("path", epilog=examples(
    "geomind weights path base",
    "HF_HUB_OFFLINE=1 geomind weights path base S1GRD LULC   # exit 1 if one is not cached",
))
def path(names: Names = None) -> None:
    """Print the cached path of official files; an error if one is not cached."""
    from geomind_cli.models.weights import hub_file

    for name, (repo, filename) in _select(names).items():
        print(f"{name}\t{hub_file(repo, filename, download=False)}")
