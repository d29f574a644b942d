"""DiffusionSpec: validation, round trip, the schedule it stands for, and resolve()."""

import pytest
import torch

from dmlib.schedules import Schedule
from dmlib.spec import DiffusionSpec, resolve


def test_round_trip_and_schedule():
    spec = DiffusionSpec("cosine", 200, "v", "beta_tilde", {"s": 0.02})
    assert DiffusionSpec.from_dict(spec.to_dict()) == spec
    assert spec.schedule_params == (("s", 0.02),) and hash(spec) == hash(DiffusionSpec.from_dict(spec.to_dict()))
    ref = Schedule.cosine(200, s=0.02)
    assert torch.equal(spec.make_schedule().alpha_bar, ref.alpha_bar)
    assert spec.make_schedule() is spec.make_schedule()  # built once
    assert torch.equal(DiffusionSpec("linear", 50).make_schedule().betas, Schedule.linear(50).betas)


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule="quadratic"), "unknown schedule"), (dict(T=0), "T must be a positive int"),
    (dict(prediction_type="score"), "unknown prediction_type"),
    (dict(variance="sigma"), "unknown variance"),
    (dict(schedule="linear", schedule_params={"s": 0.1}), "does not take the parameters"),
])
def test_bad_specs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionSpec(**kwargs).make_schedule()


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown DiffusionSpec fields"):
        DiffusionSpec.from_dict({"schedule": "cosine", "steps": 3})


def test_resolve():
    spec = DiffusionSpec("linear", 10, "v")
    sched, p, var = resolve(spec)
    assert p == "v" and var == "beta" and sched.T == 10
    assert resolve(spec, "v", "beta_tilde")[1:] == ("v", "beta_tilde")
    with pytest.raises(ValueError, match="trained to predict 'v'"):
        resolve(spec, "eps")
    s = Schedule.linear(10)
    assert resolve(s) == (s, "eps", "beta") and resolve(s, "x0")[1] == "x0"
    with pytest.raises(TypeError, match="DiffusionSpec or a Schedule"):
        resolve("cosine")
