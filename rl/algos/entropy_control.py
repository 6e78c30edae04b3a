"""Entropy-bonus coefficient control: the loss gets -α·H, with α none, fixed, adaptive or proportional.

Adaptive (Skywork-OR1): keep a target entropy H*; apply the bonus only while H ≤ H*, and after every step
move α by Δ towards keeping H at H* (up when H < H*, down otherwise), clamped to [0, coef_max].
Proportional: α = coef_max · clamp(1 − H/H*, 0, 1) from the last measured H — no bonus at or above the target,
growing smoothly as the entropy falls below it; no state, so no wind-up and no on/off switching around H*.
The target may follow a linear schedule (Qwen3: entropy should rise steadily or stay stable):
H*(step) = target + (target_end - target) · clamp(step / total_steps, 0, 1).

Formulas: docs/ALGORITHMS.md#entropy-control.
"""

from __future__ import annotations

from collections.abc import Callable


def _none(ctrl: EntropyController, entropy: float | None, step: int) -> float:
    return 0.0


def _fixed(ctrl: EntropyController, entropy: float | None, step: int) -> float:
    return ctrl.coef


def _adaptive(ctrl: EntropyController, entropy: float | None, step: int) -> float:
    """The current α while H ≤ H*(step) (or before any H is measured), else none."""
    return ctrl.coef if entropy is None or entropy <= ctrl.target_at(step) else 0.0


def _proportional(ctrl: EntropyController, entropy: float | None, step: int) -> float:
    """coef_max · clamp(1 − H/H*(step), 0, 1); none before any H is measured."""
    target = ctrl.target_at(step)
    if entropy is None or target <= 0:
        return 0.0
    return ctrl.coef_max * min(max(1.0 - entropy / target, 0.0), 1.0)


# mode -> rule(controller, last measured H or None, step) -> α for this step's loss
_RULES: dict[str, Callable[[EntropyController, float | None, int], float]] = {
    "none": _none, "fixed": _fixed, "adaptive": _adaptive, "proportional": _proportional}


class EntropyController:
    """Chooses α for the entropy bonus each step; α is the only state (save it with `state_dict`)."""

    def __init__(self, mode: str, coef: float, target: float, target_end: float | None, delta: float,
                 total_steps: int, coef_max: float = 1.0) -> None:
        if mode not in _RULES:
            raise ValueError(f"entropy control mode {mode!r} is unknown; choose one of {list(_RULES)}")
        if coef < 0 or delta < 0 or coef_max < 0:
            raise ValueError(f"entropy coef, delta and coef_max must be >= 0, got {coef}, {delta}, {coef_max}")
        if mode == "adaptive" and coef > coef_max:
            raise ValueError(f"entropy coef={coef} exceeds coef_max={coef_max}; raise coef_max or lower coef")
        if total_steps < 1:
            raise ValueError(f"entropy control total_steps must be >= 1, got {total_steps}")
        self.mode, self.coef, self.target, self.target_end = mode, float(coef), float(target), target_end
        self.delta, self.total_steps, self.coef_max = float(delta), total_steps, float(coef_max)

    def target_at(self, step: int) -> float:
        """H*(step): `target` at step 0, `target_end` from step total_steps on (constant when target_end is None)."""
        if self.target_end is None:
            return self.target
        frac = min(max(step / self.total_steps, 0.0), 1.0)
        return self.target + (self.target_end - self.target) * frac

    def coef_for_loss(self, entropy: float | None, step: int) -> float:
        """α to apply this step given the last measured mean token entropy H (nats; None before any step:
        adaptive then applies its starting α, proportional none)."""
        return _RULES[self.mode](self, entropy, step)

    def update(self, entropy: float, step: int) -> None:
        """After a step: adaptive α ← clamp(α + Δ if H < H*(step) else α - Δ, 0, coef_max); others no-op."""
        if self.mode != "adaptive":
            return
        moved = self.coef + self.delta if entropy < self.target_at(step) else self.coef - self.delta
        self.coef = min(max(moved, 0.0), self.coef_max)

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.coef = float(state["coef"])
