"""A private small file system for one command: how the tests make a full disk."""

from __future__ import annotations

import shlex
import shutil
import subprocess


def private_tmpfs(target: str, size: str) -> list[str] | None:
    """A command prefix that runs its command with a tmpfs of ``size`` (``mount``'s
    syntax: ``4m``, ``64k``) mounted over the folder ``target`` in a mount namespace of
    its own (needs root, as in CI and on the dev VM), or None where that fails."""
    if shutil.which("unshare") is None:
        return None
    script = f'mount -t tmpfs -o size={size} tmpfs {shlex.quote(target)} && exec "$@"'
    prefix = ["unshare", "-m", "sh", "-c", script, "sh"]
    try:
        ok = subprocess.run([*prefix, "df", target], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if ok.returncode == 0 else None
