"""What a sandboxed run may have left on the host: the hostile-program tests (sandbox, code verifier, `python` tool)
check that no process carrying a case's marker outlives the run."""

from __future__ import annotations

import os


def processes_with(marker: str) -> list[int]:
    """PIDs of the host's processes whose command line contains `marker` (processes that vanish mid-scan are skipped)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found
