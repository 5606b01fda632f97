"""Between a :class:`RestartOutcome` and one Optuna trial: params, value, user attrs, curve.

Both the bulk writer and the stock-equivalent :func:`to_frozen_trial` go through
here, so the two paths store the same thing by construction.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState, create_trial

from robustness.records import CurvePoint, RestartOutcome
from robustness.storage._keys import (
    ATTR_DEVICE,
    ATTR_DIVERGED,
    ATTR_DIVERGED_STEP,
    ATTR_PRIMARY,
    ATTR_RESTART,
    ATTR_SUCCESS,
    ATTR_TRAIN_LOSS,
    ATTR_WALL_TIME,
    METRIC_PREFIX,
    SEED_PARAM,
    plain,
)

# Seeds are 31-bit (see robustness.training.spec.restart_seed), so every seed fits.
SEED_DISTRIBUTION = IntDistribution(0, 2**31 - 1)


def trial_params(outcome: RestartOutcome) -> dict[str, Any]:
    """The trial's params: every grid coordinate plus ``seed``; validates the record."""
    if SEED_PARAM in outcome.params:
        raise ValueError(f"a grid axis may not be called {SEED_PARAM!r}: the restart seed is stored under that name")
    seed = outcome.seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an int in [0, 2**31), got {seed!r}")
    if outcome.primary_metric not in outcome.metrics:
        raise ValueError(f"primary metric {outcome.primary_metric!r} is not among the metrics {sorted(outcome.metrics)}")
    steps = [p.step for p in outcome.curve]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("curve steps must be strictly increasing (Optuna keeps one value per step)")
    params = {str(k): plain(str(k), v) for k, v in outcome.params.items()}
    params[SEED_PARAM] = int(seed)
    return params


def _choice_order(value: Any) -> tuple[int, Any]:
    # None first, then booleans, numbers and strings, each in natural order.
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, numbers.Real):
        return (2, value)
    return (3, value)


def _categorical(values: Iterable[Any], existing: BaseDistribution | None) -> BaseDistribution:
    """A categorical over distinct ``values`` that keeps ``existing``'s choices first.

    Keeping old choices in place means a value keeps its index, so distributions
    grow as cells are added instead of disagreeing from one pack to the next.
    """
    old = existing.choices if isinstance(existing, CategoricalDistribution) else ()
    return merge_categorical(CategoricalDistribution(old) if old else None, values)


def merge_categorical(existing: CategoricalDistribution | None, values: Iterable[Any]) -> CategoricalDistribution:
    """``existing``'s choices, in place, followed by the new ones among ``values`` in natural order."""
    old = list(existing.choices) if existing is not None else []
    new = [v for v in sorted(set_of(values), key=_choice_order) if not any(type(c) is type(v) and c == v for c in old)]
    return CategoricalDistribution(old + new)


def set_of(values: Iterable[Any]) -> list[Any]:
    """Distinct values, type-exact (True and 1 are different choices)."""
    return [v for _, v in dict.fromkeys((type(v), v) for v in values)]


def extends(old: BaseDistribution, new: BaseDistribution) -> bool:
    """Whether a value stored under ``old`` means the same under ``new`` (its choices come first)."""
    if not (isinstance(old, CategoricalDistribution) and isinstance(new, CategoricalDistribution)):
        return False
    head = new.choices[: len(old.choices)]
    return len(head) == len(old.choices) and all(type(a) is type(b) and a == b for a, b in zip(old.choices, head))


def build_distributions(
    params_list: Sequence[Mapping[str, Any]],
    *,
    given: Mapping[str, BaseDistribution] | None,
    existing: Mapping[str, BaseDistribution],
) -> dict[str, BaseDistribution]:
    """One distribution per param name: ``given``, else the study's if it fits, else a categorical."""
    names = sorted({name for params in params_list for name in params})
    out: dict[str, BaseDistribution] = {}
    for name in names:
        # Distinct values, type-exact (True and 1 are different choices).
        values = [v for _, v in {(type(p[name]), p[name]) for p in params_list if name in p}]
        if given is not None and name in given:
            dist = given[name]
        elif name in existing and all(_contains(existing[name], v) for v in values):
            dist = existing[name]
        elif name == SEED_PARAM:
            dist = SEED_DISTRIBUTION
        else:
            dist = _categorical(values, existing.get(name))
        bad = [v for v in values if not _contains(dist, v)]
        if bad:
            raise ValueError(f"parameter {name!r} = {bad[0]!r} is outside its distribution {dist}")
        out[name] = dist
    return out


def _contains(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return any(type(c) is type(value) and c == value for c in dist.choices)
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (TypeError, ValueError):
        return False


def internal_value(dist: BaseDistribution, value: Any) -> float:
    """Optuna's float representation of ``value`` (a categorical's index; type-exact)."""
    if isinstance(dist, CategoricalDistribution):
        # choices.index() would confuse True with 1; match the type as well.
        for index, choice in enumerate(dist.choices):
            if type(choice) is type(value) and choice == value:
                return float(index)
        raise ValueError(f"{value!r} is not a choice of {dist}")
    return float(dist.to_internal_repr(value))


def trial_value(outcome: RestartOutcome, *, maximize: bool) -> float:
    """The trial's objective value: the primary metric, with NaN made the worst value.

    Optuna cannot store NaN as a COMPLETE trial's value, so a diverged restart whose
    metric is NaN gets -inf when maximizing (+inf when minimizing). The NaN itself
    stays in the ``metrics.*`` user attribute, which is what the reader uses.
    """
    value = outcome.value
    if math.isnan(value):
        return -math.inf if maximize else math.inf
    return value


def user_attrs(outcome: RestartOutcome) -> dict[str, Any]:
    """The trial's user attributes (JSON values, exactly what ``set_user_attr`` would store)."""
    attrs: dict[str, Any] = {
        ATTR_RESTART: int(outcome.restart),
        # A diverged restart is a failure whatever the trainer said: dropping or
        # passing it would inflate success rates.
        ATTR_SUCCESS: bool(outcome.success) and not outcome.diverged,
        ATTR_DIVERGED: bool(outcome.diverged),
        ATTR_DIVERGED_STEP: None if outcome.diverged_step is None else int(outcome.diverged_step),
        ATTR_WALL_TIME: float(outcome.wall_time_s),
        ATTR_DEVICE: str(outcome.device),
        ATTR_PRIMARY: str(outcome.primary_metric),
        ATTR_TRAIN_LOSS: [float(p.train_loss) for p in outcome.curve],
    }
    for name, value in outcome.metrics.items():
        attrs[METRIC_PREFIX + name] = float(value)
    return attrs


def intermediate_values(outcome: RestartOutcome) -> dict[int, float]:
    """The learning curve as Optuna's intermediate values: step -> metric."""
    return {int(p.step): float(p.metric) for p in outcome.curve}


def to_frozen_trial(
    outcome: RestartOutcome, distributions: Mapping[str, BaseDistribution], *, maximize: bool
) -> FrozenTrial:
    """The stock-Optuna trial equivalent to what :meth:`RestartStore.write_outcomes` stores.

    ``study.add_trials([to_frozen_trial(...)])`` is the slow reference path that the
    tests and the benchmark compare the bulk writer against.
    """
    params = trial_params(outcome)
    return create_trial(
        state=TrialState.COMPLETE,
        value=trial_value(outcome, maximize=maximize),
        params=params,
        distributions={name: distributions[name] for name in params},
        user_attrs=user_attrs(outcome),
        intermediate_values=intermediate_values(outcome),
    )


def decode_outcome(
    params: Mapping[str, Any], attrs: Mapping[str, Any], intermediate: Mapping[int, float]
) -> RestartOutcome:
    """Rebuild the record from one trial's params, user attrs and intermediate values."""
    cell = {k: v for k, v in params.items() if k != SEED_PARAM}
    metrics = {k[len(METRIC_PREFIX) :]: float(v) for k, v in attrs.items() if k.startswith(METRIC_PREFIX)}
    steps = sorted(intermediate)
    losses = attrs.get(ATTR_TRAIN_LOSS, [])
    curve = tuple(
        CurvePoint(step=int(s), train_loss=float(loss), metric=float(intermediate[s])) for s, loss in zip(steps, losses)
    )
    diverged_step = attrs.get(ATTR_DIVERGED_STEP)
    return RestartOutcome(
        params=cell,
        restart=int(attrs[ATTR_RESTART]),
        seed=int(params[SEED_PARAM]),
        metrics=metrics,
        primary_metric=str(attrs[ATTR_PRIMARY]),
        success=bool(attrs[ATTR_SUCCESS]),
        curve=curve,
        diverged=bool(attrs[ATTR_DIVERGED]),
        diverged_step=None if diverged_step is None else int(diverged_step),
        wall_time_s=float(attrs[ATTR_WALL_TIME]),
        device=str(attrs[ATTR_DEVICE]),
    )
