"""The geomind command run in this process: fast for many small cases (the subprocess tests cover the real exit)."""

import sys


def run_geomind(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``geomind ARGS`` through its entry point: (exit code, stdout, stderr)."""
    from geomind_cli.cli.app import main

    monkeypatch.setattr(sys, "argv", ["geomind", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err
