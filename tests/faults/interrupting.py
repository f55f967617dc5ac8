"""Run the geomind CLI with a fault injected at one point: ``python interrupting.py POINT SIGNAL ARGS...``.

POINT: ``reading`` (the first window read, in the decoding thread), ``model`` (the first tile function call, in the
main thread) or ``finishing`` (the first COG conversion of a finished output). SIGNAL: INT, TERM or KILL, sent by
the process to itself at that point, as a user's Ctrl-C, a scheduler's SIGTERM or an OOM kill would arrive.
"""

import os
import signal
import sys


_SENT = []  # one signal per run, wherever the point is patched


def _signal_once(owner, attribute: str, signum: int):
    original = getattr(owner, attribute)
    sent = _SENT

    def wrapper(*args, **kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    setattr(owner, attribute, wrapper)


def main():
    point, name, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    signum = getattr(signal, f"SIG{name}")
    if point == "reading":
        from geomind_cli.engine.scene import Scene

        # Scenes larger than a tile are decoded through fetch (the decoding thread), smaller ones through read.
        _signal_once(Scene, "fetch", signum)
        _signal_once(Scene, "read", signum)
    elif point == "model":
        for module in ("generate", "tokenize", "embed"):  # modules that imported it by name
            mod = __import__(f"geomind_cli.tasks.{module}", fromlist=["to_tensors"])
            _signal_once(mod, "to_tensors", signum)
    elif point == "finishing":
        from geomind_cli.engine.writer import RasterWriter

        _signal_once(RasterWriter, "finish", signum)
    else:
        raise SystemExit(f"unknown point {point}")
    sys.argv = ["geomind", *args]
    from geomind_cli.cli.app import main as geomind

    geomind()


if __name__ == "__main__":
    main()
