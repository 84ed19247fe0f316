"""Where the ``docs/*.md`` files that messages and ``--help`` name are on this machine.

A source checkout (or an editable install) has them in ``docs/`` next to the packages;
a wheel installs them under its data scheme's ``share/doc/spotformer-toolkit/docs``
(``sys.prefix`` for a virtual environment or a system install, the user base for
``pip install --user``). Found in review: the wheel shipped without them, so the
messages' "docs/io.md, 'Contrast'" named a file a user of the wheel did not have.
"""

from __future__ import annotations

import site
import sysconfig
from pathlib import Path

#: The folder, under an install scheme's data path, that ``pyproject.toml``'s
#: ``data-files`` installs the docs to.
INSTALLED = Path("share", "doc", "spotformer-toolkit", "docs")


def docs_dir() -> Path | None:
    """The folder holding ``io.md``, ``sw_mro.md``, ... or ``None`` where none is found."""
    candidates = [Path(__file__).resolve().parents[1] / "docs"]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        candidates.append(Path(sysconfig.get_path("data", scheme)) / INSTALLED)
    candidates.append(Path(site.getuserbase()) / INSTALLED)
    return next((c for c in candidates if (c / "sw_mro.md").is_file()), None)


def docs_line() -> str:
    """One line for ``--help``: where the docs named in messages (``docs/*.md``) are."""
    where = docs_dir()
    if where is None:
        return "The docs named in messages (docs/*.md) are not installed on this machine."
    return f"The docs named in messages (docs/*.md): {where}"
