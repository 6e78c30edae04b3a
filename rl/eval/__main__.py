"""`python -m rl.eval`: see `rl/eval/cli.py`."""

from rl.eval.cli import main

main()
