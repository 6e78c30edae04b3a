"""Evaluation and the reasoning-RL data tools, built on one engine in this process (no Ray).

`python -m rl.eval` (`cli.py`): pass@k (`pass_k.py`), the thinking-budget sweep (`budget_sweep.py`) and mode
following (`mode_following.py`). `python -m rl.datatools` (`datatools.py`): the query filter and rejection
sampling for SFT, whose selection rules (`rejection.py`) `distill.offpolicy` uses too. Configs: `config.py`;
inputs, engine and scoring shared by both: `common.py`.
"""

from rl.eval.config import EvalConfig, FilterConfig, RejectionConfig
from rl.eval.mode_following import follows_mode
from rl.eval.pass_k import pass_at_k
from rl.eval.rejection import Candidate, KeepRules, Selection, select_sft_rows

__all__ = ["Candidate", "EvalConfig", "FilterConfig", "KeepRules", "RejectionConfig", "Selection", "follows_mode",
           "pass_at_k", "select_sft_rows"]
