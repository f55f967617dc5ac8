"""The run options are declared once (RunOptions fields + RUN_OPTIONS) and reach a command as one object."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from geomind_cli.cli import options as o
from geomind_cli.cli.app import app
from geomind_cli.tasks.options import RunOptions


def _command(**selection):
    received = []

    @o.run_options(**selection)
    def command(name: str, *, run: RunOptions) -> None:
        received.append((name, run))

    tool = typer.Typer()
    tool.command()(command)
    tool.command("other")(lambda: None)  # two commands: the first is called by name
    return tool, received


def test_the_command_line_builds_one_run_options_object():
    tool, received = _command()
    result = CliRunner().invoke(tool, ["command", "scene.tif", "--device", "cpu", "--batch-size", "3", "--overlap",
                                       "32", "--no-compile", "--together", "--resume", "-q", "--workers", "2"])
    assert result.exit_code == 0, result.output
    [(name, run)] = received
    assert name == "scene.tif"
    assert run == RunOptions(device="cpu", batch_size=3, overlap=32, compile=False, each=False, resume=True,
                             quiet=True, workers=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.batch_size = 4


def test_excluded_options_are_refused_and_keep_their_defaults():
    tool, received = _command(exclude=("weights", "preview"))
    assert CliRunner().invoke(tool, ["command", "a.tif", "--weights", "random"]).exit_code == 2
    assert CliRunner().invoke(tool, ["command", "a.tif"]).exit_code == 0
    assert received[-1][1].weights is None and received[-1][1].preview is False


def test_every_field_has_one_option_and_a_typo_is_caught():
    assert set(o.RUN_OPTIONS) == {field.name for field in dataclasses.fields(RunOptions)}
    with pytest.raises(TypeError, match="wieghts"):
        o.run_options(exclude=("wieghts",))


@pytest.mark.parametrize("command", ["generate", "tokenize", "detokenize", "embed", "segment", "classify"])
def test_run_commands_show_the_run_options_panel(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Run options" in result.output and "--batch-size" in result.output and "--device" in result.output


@pytest.mark.parametrize("command", ["generate", "tokenize", "detokenize", "embed", "segment", "classify", "info",
                                     "weights list", "weights download", "weights path"])
def test_every_help_ends_with_real_examples(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    head, examples = result.output.rsplit("Examples", 1)
    assert "--help" in head and "╭" not in examples  # the examples come after every panel of options
    assert sum(f"geomind {command} " in line or line.strip() == f"geomind {command}"
               for line in examples.splitlines()) >= 2
