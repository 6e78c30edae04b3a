"""Inverse-CDF sampling (rl/rollout/cpu_sampler.py): exact frequencies, never a filtered-out token, seeded rows
reproducible. The real engine's draws are checked in tests/test_vllm_engine.py."""

from __future__ import annotations

import math

import torch

from rl.rollout.cpu_sampler import sample_from_logprobs

PROBS = [0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0]  # the last token filtered out (−inf)


def _logprobs(rows: int, probs: list[float] = PROBS) -> torch.Tensor:
    return torch.tensor(probs).log().expand(rows, -1).contiguous()


def test_frequencies_match_the_distribution_and_excluded_tokens_never_come() -> None:
    torch.manual_seed(0)
    rows = 40_000
    counts = torch.bincount(sample_from_logprobs(_logprobs(rows), {}), minlength=len(PROBS))
    assert counts[-1] == 0
    for count, p in zip(counts.tolist()[:-1], PROBS[:-1]):
        assert abs(count - rows * p) < 5 * math.sqrt(rows * p * (1 - p)), (count, p)


def test_edges_of_the_vocabulary() -> None:
    torch.manual_seed(0)
    first_only = torch.full((1000, 7), -math.inf)
    first_only[:, 0] = 0.0
    last_only = torch.full((1000, 7), -math.inf)
    last_only[:, -1] = 0.0
    assert (sample_from_logprobs(first_only, {}) == 0).all()
    assert (sample_from_logprobs(last_only, {}) == 6).all()
    # a tail of tiny probabilities after a token holding almost all the mass: still only positive-probability tokens
    tiny = torch.tensor([0.0] + [-30.0] * 5000 + [-math.inf] * 10).expand(2000, -1).contiguous()
    assert (sample_from_logprobs(tiny, {}) < 5001).all()


def test_seeded_rows_are_reproducible_and_unseeded_rows_are_not_tied_to_them() -> None:
    lp = _logprobs(64, [1 / 16] * 16)

    def draw(seed: int) -> torch.Tensor:
        return sample_from_logprobs(lp, {3: torch.Generator().manual_seed(seed), 10: torch.Generator().manual_seed(7)})

    torch.manual_seed(1)
    a = draw(123)
    torch.manual_seed(2)
    b = draw(123)
    assert a[3] == b[3] and a[10] == b[10]
    assert not torch.equal(torch.cat([a[:3], a[4:10], a[11:]]), torch.cat([b[:3], b[4:10], b[11:]]))
    assert len({draw(seed)[3].item() for seed in range(40)}) > 4  # the seed does move the seeded row's draw
