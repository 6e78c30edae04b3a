"""Standalone verifiers: each grades a completion against a reference and returns a `Verdict`.

This package imports nothing else from the toolkit, so it can be used on its own.
Submodules (`verifiers.math`, `verifiers.code`) are imported on demand; importing `verifiers` is cheap.
"""

from verifiers.verdict import REWARD_STATUSES, Status, Verdict

__all__ = ["REWARD_STATUSES", "Status", "Verdict"]
