"""Where the ``docs/*.md`` files that messages and ``--help`` name are on this machine.

A source checkout (or an editable install) has them in ``docs/`` next to the packages;
a wheel installs them as data files under ``share/doc/spotformer-toolkit/docs`` of its
install scheme (``sys.prefix`` for a virtual environment, the user base for ``pip
install --user``, the folder given to ``--prefix``), which the installed distribution's
file list (its ``RECORD``) locates. Found in review: the wheel shipped without them, so
the messages' "docs/io.md, 'Contrast'" named a file a user of the wheel did not have.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

#: The distribution whose data files hold the docs.
DISTRIBUTION = "spotformer-toolkit"
#: The folder, under an install scheme's data path, that ``pyproject.toml``'s
#: ``data-files`` installs the docs to.
INSTALLED = Path("share", "doc", "spotformer-toolkit", "docs")


def docs_dir() -> Path | None:
    """The folder holding ``io.md``, ``sw_mro.md``, ... or ``None`` where none is found."""
    source = Path(__file__).resolve().parents[1] / "docs"
    if (source / "sw_mro.md").is_file():
        return source
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if (
            f.name == "sw_mro.md"
            and Path(*f.parts[-len(INSTALLED.parts) - 1 :]).parent == INSTALLED
        ):
            found = Path(f.locate()).resolve().parent
            if found.is_dir():
                return found
    return None


def docs_line() -> str:
    """One line for ``--help``: where the docs named in messages (``docs/*.md``) are."""
    where = docs_dir()
    if where is None:
        return "The docs named in messages (docs/*.md) are not installed on this machine."
    return f"The docs named in messages (docs/*.md): {where}"
