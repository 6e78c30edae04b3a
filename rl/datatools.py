"""`python -m rl.datatools {filter,rejection} --config X.yaml [key=value ...]`: the entry point of the reasoning-RL
data tools, which live in `rl/eval/datatools.py` (query filter, rejection sampling for SFT)."""

from rl.eval.datatools import main

if __name__ == "__main__":
    main()
