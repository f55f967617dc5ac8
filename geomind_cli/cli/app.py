"""The ``geomind`` Typer application: registers the commands and turns library errors into one line."""

from __future__ import annotations

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
app.command("generate", epilog=generate.EXAMPLES)(generate.generate)
app.command("tokenize", epilog=tokenize.EXAMPLES)(tokenize.tokenize)
app.command("detokenize", epilog=detokenize.EXAMPLES)(detokenize.detokenize)
app.command("embed", epilog=embed.EXAMPLES)(embed.embed)
app.command("info", epilog=info.EXAMPLES)(info.info)
app.command("segment", epilog=segment.EXAMPLES)(segment.segment)
app.command("classify", epilog=classify.EXAMPLES)(classify.classify)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Entry point: library errors become one line on stderr and exit code 1 (GEOMIND_DEBUG=1 shows tracebacks);
    SIGINT and SIGTERM clean up, print one line and exit 130 and 143."""
    from geomind_cli.cli.logs import setup_logging
    from geomind_cli.errors import GeomindError
    from geomind_cli.interrupts import Interrupted, handling_signals, received

    setup_logging()
    debug = bool(os.environ.get("GEOMIND_DEBUG"))
    try:
        with handling_signals():
            # Typer (standalone_mode=False) returns the exit code of a typer.Exit, and 130 for a KeyboardInterrupt.
            code = app(standalone_mode=False)
    except (Interrupted, KeyboardInterrupt):
        code = 130  # reported below, with the signal that arrived (SIGINT when none was caught here)
    except GeomindError as exc:
        if debug:
            raise
        _fail(str(exc), 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except OSError as exc:  # a full disk, a vanished folder, a truncated input (GDAL's RasterioIOError too)
        if debug:
            raise
        _fail(_io_error_line(exc), 1)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    signum = received()
    if signum is not None or code == 130:
        import signal

        signum = signum or signal.SIGINT
        _fail(f"interrupted by {signal.Signals(signum).name}; no partial output was left behind", 128 + signum)
    if isinstance(code, int) and code:
        sys.exit(code)


def _io_error_line(exc: OSError) -> str:
    """One line for an I/O error: GDAL's real reason is in the exception it chains ("Read failed. See previous
    exception for details." says nothing by itself)."""
    reason, cause = str(exc), exc.__cause__ or exc.__context__
    while cause is not None and "previous exception" in reason:
        reason, cause = str(cause), cause.__cause__ or cause.__context__
    if exc.strerror and exc.filename:
        reason = f"{exc.strerror}: {exc.filename}"
    reason = (reason.splitlines() or [type(exc).__name__])[0].rstrip(".")
    if str(exc).startswith("Read failed"):
        return f"reading an input failed ({reason}); it may be truncated or corrupt: check it with gdalinfo -checksum"
    return f"{reason}; check free space and the output folder, then run again"


def _fail(message: str, code: int):
    print(f"geomind: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
