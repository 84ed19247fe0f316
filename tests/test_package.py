"""Packaging and CLI wiring."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spotformer.cli import main as spotformer_main
from sw_mro.cli import main as sw_mro_main
from sw_mro.io.samples import carphone_path, dlib_shape_predictor_path


def test_sample_files_are_found() -> None:
    assert carphone_path().stat().st_size > 100_000
    assert dlib_shape_predictor_path().stat().st_size > 50_000_000


@pytest.mark.parametrize("main", [spotformer_main, sw_mro_main])
def test_cli_help_lists_commands(main, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "commands:" in capsys.readouterr().out


def test_console_scripts_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotformer.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "spotformer" in out.stdout


def test_ctrl_c_ends_a_command_without_a_traceback(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in any command: exit status 130 and one line, not a traceback."""
    from sw_mro._cli_util import dispatch

    (tmp_path / "interrupted_cmd.py").write_text(
        "def add_arguments(parser):\n    pass\n\ndef run(args):\n    raise KeyboardInterrupt\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    commands = {"work": ("interrupted_cmd", "a command that is interrupted")}
    assert dispatch("tool", "test", commands, ["work"]) == 130
    err = capsys.readouterr().err
    assert "tool work: interrupted" in err and "Traceback" not in err
