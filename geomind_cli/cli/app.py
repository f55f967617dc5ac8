"""The ``geomind`` Typer application: registers the commands and turns library errors into one line."""

from __future__ import annotations

import logging
import os
import sys

import typer

from geomind_cli.cli import detokenize, embed, generate, info, tokenize, weights
from geomind_cli.cli import classify, segment

app = typer.Typer(
    name="geomind",
    help="Run IBM/ESA's TerraMind foundation model over whole satellite scenes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback with locals would dump whole tensors
    add_completion=False,
    rich_markup_mode="markdown",
)
app.command("generate")(generate.generate)
app.command("tokenize")(tokenize.tokenize)
app.command("detokenize")(detokenize.detokenize)
app.command("embed")(embed.embed)
app.command("info")(info.info)
app.command("segment")(segment.segment)
app.command("classify")(classify.classify)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Entry point: library errors become one line on stderr and exit code 1 (GEOMIND_DEBUG=1 shows tracebacks)."""
    from geomind_cli.errors import GeomindError

    logging.basicConfig(level=logging.WARNING, format="geomind: %(levelname)s: %(message)s")
    try:
        app(standalone_mode=False)
    except GeomindError as exc:
        if os.environ.get("GEOMIND_DEBUG"):
            raise
        print(f"geomind: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("geomind: interrupted; no partial output was left behind", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
