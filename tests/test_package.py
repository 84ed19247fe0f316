"""Packaging and CLI wiring."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from spotformer.cli import main as spotformer_main
from sw_mro import _docs
from sw_mro.cli import main as sw_mro_main
from sw_mro.io.samples import carphone_path, dlib_shape_predictor_path

ROOT = Path(__file__).resolve().parents[1]


def test_sample_files_are_found() -> None:
    assert carphone_path().stat().st_size > 100_000
    assert dlib_shape_predictor_path().stat().st_size > 50_000_000


@pytest.mark.parametrize("main", [spotformer_main, sw_mro_main])
def test_cli_help_lists_commands(main, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "commands:" in capsys.readouterr().out


def test_help_names_the_docs_folder(capsys: pytest.CaptureFixture[str]) -> None:
    """Messages name docs/*.md; --help says where they are on this machine."""
    where = _docs.docs_dir()
    assert where is not None and (where / "io.md").is_file()
    with pytest.raises(SystemExit):
        sw_mro_main(["--help"])
    assert f"(docs/*.md): {where}" in capsys.readouterr().out


def test_docs_not_installed_is_said(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_docs, "__file__", str(tmp_path / "site-packages/sw_mro/_docs.py"))

    def missing(name: str):
        raise _docs.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_docs.metadata, "distribution", missing)
    assert _docs.docs_dir() is None
    assert "not installed" in _docs.docs_line()


def test_wheel_installs_the_docs_where_help_finds_them(tmp_path) -> None:
    """A wheel installed in a fresh virtual environment puts every docs/*.md where
    docs_dir() and --help find them (found in review: the wheel shipped none, so the
    messages' "docs/io.md" named a file its users did not have)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("docs", "sw_mro", "spotformer"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    quiet = {"capture_output": True, "text": True}
    wheels = tmp_path / "wheel"
    made = subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src),
         "-w", str(wheels)], **quiet,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (wheel,) = wheels.glob("*.whl")
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    put = subprocess.run(
        [*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        **quiet,
    )
    assert put.returncode == 0, put.stderr
    # The new environment's packages, then this one's for the dependencies.
    deps = sysconfig.get_path("purelib")
    code = f"import sys; sys.path.append({deps!r}); from sw_mro.cli import main; main(['--help'])"
    shown = subprocess.run([str(python), "-c", code], cwd=tmp_path, **quiet)
    assert shown.returncode == 0, shown.stderr
    installed = env / _docs.INSTALLED
    assert f"(docs/*.md): {installed.resolve()}" in shown.stdout, shown.stdout
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert "sw_mro.md" in docs and "io.md" in docs
    assert sorted(p.name for p in installed.glob("*.md")) == docs


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


_NO_CACHE_PLACE = """
import numba, numpy as np
from sw_mro.io.landmarks import make_landmarker
from sw_mro.io.samples import astronaut
import sw_mro.ops._farneback_numba  # its kernels are defined at import, as the shape model's
res = make_landmarker("dlib").detect(astronaut())
print("found", bool(res.found[0]), "cache_dir", repr(numba.config.CACHE_DIR))
"""


def test_numba_modules_load_where_numba_has_no_cache_place(tmp_path) -> None:
    """numba's cache=True fails when a function is defined if no cache folder can be
    written (a read-only install, a user without a writable home; found in review:
    every extraction failed there). Simulated with numba's own switch: only the
    NUMBA_CACHE_DIR locator, and no NUMBA_CACHE_DIR. The code caches in a folder of the
    user's own in the temp folder instead, and without any, compiles uncached."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "SW_MRO_CACHE"))}
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    run = [sys.executable, "-c", _NO_CACHE_PLACE]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(run, capture_output=True, text=True, env={**env, "TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "found True cache_dir ''" in done.stdout  # numba's setting left as it was
    cached = list(tmp.glob("sw_mro-numba-*/*/*.nbi"))
    assert "shape_model" in {p.name.split(".")[0] for p in cached}  # what was compiled
    # The temp folder's one taken by a link or open to others: compiled without a cache
    # (found in review: a TMPDIR that is a file only sent it to /tmp instead).
    for kind in ("open", "link"):
        tmp2 = tmp_path / kind
        tmp2.mkdir()
        taken = tmp2 / cached[0].parent.parent.name
        if kind == "open":
            taken.mkdir()
            taken.chmod(0o777)
        else:
            taken.symlink_to(cached[0].parent.parent)
        check = _NO_CACHE_PLACE + (
            "from sw_mro.io import shape_model\n"
            "print('cache', type(shape_model._predict._cache).__name__)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True,
            env={**env, "TMPDIR": str(tmp2)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "found True" in done.stdout and "cache NullCache" in done.stdout, done.stdout
        assert not list(taken.rglob("*.nbi")) or kind == "link"


def test_every_public_name_exists() -> None:
    """Each module's ``__all__`` names only what the module has (``from m import *``
    fails on a name it does not), and a module whose ``__all__`` leaves out one of its
    public functions is caught for the two documented model-folder helpers."""
    import importlib
    import pkgutil

    import spotformer
    import sw_mro

    checked = 0
    for pkg in (sw_mro, spotformer):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            module = importlib.import_module(info.name)
            for name in getattr(module, "__all__", ()):
                assert hasattr(module, name), f"{info.name}.__all__ names {name!r}"
                checked += 1
    assert checked > 50
    from sw_mro.io import landmarks

    assert {"insightface_models", "check_insightface_models"} <= set(landmarks.__all__)
