"""``DiffusionSpec``: everything a trained diffusion model needs besides its weights.

A network's weights mean nothing without the diffusion they were trained for: the noise
schedule (name, parameters, T), what the network predicts (``prediction_type``) and the
reverse-process variance sigma_t^2 to sample with. A ``DiffusionSpec`` holds exactly that.
It is saved in every checkpoint and exported weight file (``dmlib.checkpoint``), returned
by the loaders (``load_diffusion_model``, ``load_pretrained_diffusion``) and taken by the
sampler loop (``dmlib.sampling.sample``), the losses and the command lines, so a v-model
cannot be sampled as an eps-model by accident. Chapter 7 introduces it.

    spec = DiffusionSpec("cosine", T=1000, prediction_type="v")
    schedule = spec.make_schedule()     # the Schedule it stands for (built once, cached)
    spec.to_dict() / DiffusionSpec.from_dict(d)   # plain values, for checkpoints
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .schedules import SCHEDULES, Schedule, check_variance_type
from .targets import check_prediction_type


@dataclass(frozen=True)
class DiffusionSpec:
    """The diffusion a model was trained for (chapter 7).

    schedule: a name in ``dmlib.schedules.SCHEDULES`` (``"linear"``, ``"cosine"``,
    ``"sigmoid"``); schedule_params: keyword arguments of that constructor besides T, as
    sorted (name, value) pairs (a dict is accepted and converted), e.g. ``{"s": 0.008}``;
    T: number of diffusion steps; prediction_type: ``"eps"``, ``"x0"``, ``"mu"`` or ``"v"``;
    variance: the default sigma_t^2 for sampling, ``"beta"`` or ``"beta_tilde"``;
    num_classes: 0 for an unconditional model, else K: the model takes labels 0..K-1 and the
    null label K (``model(xt, t, y)``; classifier-free guidance, chapter 9).
    """

    schedule: str = "cosine"
    T: int = 1000
    prediction_type: str = "eps"
    variance: str = "beta"
    schedule_params: tuple[tuple[str, float], ...] = field(default=())
    num_classes: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
                or self.num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0: unconditional), got "
                             f"{self.num_classes!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of "
                             f"{sorted(SCHEDULES)}")
        if not isinstance(self.T, int) or isinstance(self.T, bool) or self.T < 1:
            raise ValueError(f"T must be a positive int, got {self.T!r}")
        check_prediction_type(self.prediction_type)
        check_variance_type(self.variance)
        params = self.schedule_params
        if isinstance(params, Mapping):
            params = tuple(sorted(params.items()))
        params = tuple((str(k), float(v)) for k, v in params)
        for k, v in params:
            if not math.isfinite(v):
                raise ValueError(f"schedule parameter {k}={v!r} must be finite")
        object.__setattr__(self, "schedule_params", params)

    def make_schedule(self) -> Schedule:
        """The ``Schedule`` this spec stands for: ``SCHEDULES[name](T, **params)``, built
        once and cached on the (frozen) spec."""
        cached = self.__dict__.get("_schedule")
        if cached is None:
            try:
                cached = SCHEDULES[self.schedule](self.T, **dict(self.schedule_params))
            except TypeError as e:
                raise ValueError(f"schedule {self.schedule!r} does not take the parameters "
                                 f"{dict(self.schedule_params)}: {e}") from e
            object.__setattr__(self, "_schedule", cached)  # a cache, not a field
        return cached

    def replace(self, **changes: Any) -> "DiffusionSpec":
        """A copy with some fields changed (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (str, int, float, lists): what checkpoints store."""
        d = asdict(self)
        d["schedule_params"] = {k: v for k, v in self.schedule_params}
        return d

    @property
    def null_label(self) -> int | None:
        """The label meaning "no label" (= num_classes), None for unconditional models."""
        return self.num_classes if self.num_classes else None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiffusionSpec":
        """Inverse of ``to_dict``; unknown keys raise ValueError naming them."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a DiffusionSpec dict must be a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown DiffusionSpec fields {bad}; a spec has {sorted(names)}")
        return cls(**dict(d))

    def __str__(self) -> str:
        params = "".join(f", {k}={v:g}" for k, v in self.schedule_params)
        cond = f", conditioned on {self.num_classes} classes" if self.num_classes else ""
        return (f"{self.schedule} schedule (T={self.T}{params}), predicts {self.prediction_type}, "
                f"samples with variance {self.variance}{cond}")


def resolve(diffusion: "DiffusionSpec | Schedule", prediction_type: str | None = None,
            variance: str | None = None) -> tuple[Schedule, str, str]:
    """(schedule, prediction_type, variance) from a spec or a bare ``Schedule`` (chapter 7).

    With a ``DiffusionSpec`` the spec decides; an explicit ``prediction_type`` that differs
    from the spec's raises ValueError (sampling a v-model as an eps-model is the bug this
    prevents), while ``variance`` may override the spec's default (both are valid samplers
    of the same model). With a ``Schedule`` (chapters 4-6, before specs exist) the
    arguments decide, defaulting to ``"eps"`` and ``"beta"``.
    """
    if isinstance(diffusion, DiffusionSpec):
        if prediction_type is not None and prediction_type != diffusion.prediction_type:
            raise ValueError(f"the model was trained to predict {diffusion.prediction_type!r} "
                             f"(its DiffusionSpec) but prediction_type={prediction_type!r} was "
                             f"passed; leave prediction_type out and the spec decides")
        var = check_variance_type(variance) if variance is not None else diffusion.variance
        return diffusion.make_schedule(), diffusion.prediction_type, var
    if isinstance(diffusion, Schedule):
        return (diffusion, check_prediction_type(prediction_type or "eps"),
                check_variance_type(variance or "beta"))
    raise TypeError(f"expected a DiffusionSpec or a Schedule, got {type(diffusion).__name__}")


__all__ = ["DiffusionSpec", "resolve"]
