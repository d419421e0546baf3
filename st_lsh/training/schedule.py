"""Hardness curriculum for the training-time refresh: from semi-hard negatives early to the hardest late.

A :class:`HardnessSchedule` interpolates, linearly in training progress (``global_step / max_steps``), the rank
offset ``range_min`` of the candidate window and/or a margin. A large ``range_min`` skips the nearest
candidates (easier negatives); a large margin keeps only candidates well below the positive. Both moving to 0
makes negatives harder. The window keeps its width: ``range_max`` moves with ``range_min``.

Off by default (``hardness_schedule=None`` in :class:`~st_lsh.training.HardNegativeRefresher`).

Example::

    >>> from st_lsh.training import HardnessSchedule
    >>> schedule = HardnessSchedule(range_min=(20, 0), relative_margin=(0.1, 0.0))
    >>> schedule.at(0.0), schedule.at(1.0)
    ({'range_min': 20, 'relative_margin': 0.1}, {'range_min': 0, 'relative_margin': 0.0})
    >>> from st_lsh.rules import NegativeRules
    >>> schedule.apply(NegativeRules(num_negatives=1, range_max=30), 0.5)
    NegativeRules(num_negatives=1, range_min=10, range_max=40, absolute_margin=None, relative_margin=0.05, max_score=None, min_score=None, sampling_strategy='top', include_positives=False)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..rules import NegativeRules


@dataclass(frozen=True)
class HardnessSchedule:
    """Start and end values, each ``(at progress 0, at progress 1)``; None leaves that setting fixed."""

    range_min: tuple[int, int] | None = None
    relative_margin: tuple[float, float] | None = None
    absolute_margin: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.range_min is None and self.relative_margin is None and self.absolute_margin is None:
            raise ValueError("A HardnessSchedule needs at least one of range_min, relative_margin, absolute_margin.")
        if self.range_min is not None and min(self.range_min) < 0:
            raise ValueError(f"range_min must be non-negative, got {self.range_min}.")

    def at(self, progress: float) -> dict[str, float | int]:
        """The settings at ``progress`` in [0, 1] (clipped)."""
        p = min(max(float(progress), 0.0), 1.0)
        out: dict[str, float | int] = {}
        if self.range_min is not None:
            start, end = self.range_min
            out["range_min"] = int(round(start + (end - start) * p))
        for name in ("relative_margin", "absolute_margin"):
            pair = getattr(self, name)
            if pair is not None:
                out[name] = float(pair[0] + (pair[1] - pair[0]) * p)
        return out

    def apply(self, rules: NegativeRules, progress: float) -> NegativeRules:
        """``rules`` (with ``range_max`` resolved) at ``progress``: the window keeps its width, ``range_max``
        moving with ``range_min``."""
        values = self.at(progress)
        if "range_min" in values and rules.range_max is not None:
            values["range_max"] = rules.range_max + int(values["range_min"]) - rules.range_min
        return replace(rules, **values)
