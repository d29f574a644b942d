"""Tests for dmlib.training: device choice, config checks, batching, EMA, clipping, warmup,
the NaN guard and exact resume (chapters 6, 7)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dmlib.checkpoint import CheckpointMismatchError, read_checkpoint
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.training import (NonFiniteLossError, TrainConfig, batch_indices, pick_device, train)

CFG = MLPConfig(hidden=16, depth=2, time_dim=8)


def _model(seed=0, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    return MLPDenoiser(MLPConfig(**{**CFG.__dict__, **kw})).to(dtype)


def _data(n=64, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, generator=g, dtype=dtype)


def denoise_loss(model, x0, generator):
    """A small denoising regression that uses the loop's generator for t and noise."""
    t = torch.randint(1, 11, (x0.shape[0],), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    xt = x0 + 0.1 * t[:, None].to(x0.dtype) * eps
    return (model(xt, t) - eps).square().mean()


def _cfg(**kw):
    base = dict(steps=10, batch_size=16, lr=1e-2, ema_decay=None, grad_clip=None, device="cpu")
    return TrainConfig(**{**base, **kw})


# -- device ---------------------------------------------------------------------------------
def test_pick_device_honours_env(monkeypatch):
    monkeypatch.setenv("DMLIB_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    monkeypatch.setenv("DMLIB_DEVICE", "banana")
    with pytest.raises(ValueError, match="DMLIB_DEVICE device 'banana' is not a device name"):
        pick_device()
    assert pick_device("cpu") == torch.device("cpu")  # an explicit choice wins over the env


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_errors_for_missing_cuda(monkeypatch):
    monkeypatch.delenv("DMLIB_DEVICE", raising=False)
    with pytest.raises(ValueError, match="'cuda' is not available"):
        pick_device("cuda")
    monkeypatch.setenv("DMLIB_DEVICE", "cuda")
    with pytest.raises(ValueError, match="unset DMLIB_DEVICE"):
        pick_device()


def test_pick_device_default_and_unsupported(monkeypatch):
    monkeypatch.delenv("DMLIB_DEVICE", raising=False)
    mps = getattr(torch.backends, "mps", None)
    want = ("cuda" if torch.cuda.is_available() else
            "mps" if mps is not None and mps.is_available() else "cpu")
    assert pick_device().type == want
    with pytest.raises(ValueError, match="not supported by dmlib"):
        pick_device("meta")


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    ({"steps": 0}, "steps must be a positive int"),
    ({"batch_size": -1}, "batch_size must be a positive int"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"weight_decay": -1e-4}, "weight_decay must be >= 0"),
    ({"grad_clip": 0.0}, "grad_clip must be > 0 or None"),
    ({"ema_decay": 1.0}, "0 < ema_decay < 1"),
    ({"ema_decay": 0.0}, "0 < ema_decay < 1"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"seed": -3}, "seed must be a non-negative int"),
    ({"ckpt_every": 5}, "ckpt_every needs ckpt_path"),
])
def test_train_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


# -- batching -------------------------------------------------------------------------------
def test_batches_cover_each_epoch_once_and_reshuffle():
    n, b = 20, 6  # 3 batches per epoch, 2 rows left out each epoch
    epoch0 = torch.cat([batch_indices(s, n, b, seed=4) for s in range(3)])
    epoch1 = torch.cat([batch_indices(s, n, b, seed=4) for s in range(3, 6)])
    assert len(set(epoch0.tolist())) == 18 and len(set(epoch1.tolist())) == 18
    assert not torch.equal(epoch0, epoch1)
    assert all(len(batch_indices(s, n, b, 4)) == b for s in range(10))
    assert not torch.equal(batch_indices(0, n, b, 4), batch_indices(0, n, b, 5))


def test_tuple_data_reaches_loss_fn_in_order():
    x = torch.arange(32.0)[:, None].repeat(1, 2)
    y = torch.arange(32.0)
    seen = []

    def loss_fn(model, batch, generator):
        xb, yb = batch
        assert torch.equal(xb[:, 0], yb)  # rows stay paired
        seen.append(yb.long())
        return model(xb, torch.ones(len(xb), dtype=torch.long)).square().mean() + 0 * yb.sum()

    train(_model(), loss_fn, (x, y), _cfg(steps=4, batch_size=8), progress=False)
    ref = [batch_indices(s, 32, 8, seed=0) for s in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(seen, ref))


# -- optimisation ---------------------------------------------------------------------------
def test_loss_decreases_on_a_trivial_problem():
    # Learn f(x, t) = -x: reachable exactly, so the loss must fall by far more than noise.
    def loss_fn(model, x, generator):
        t = torch.randint(1, 11, (x.shape[0],), generator=generator)
        return (model(x, t) + x).square().mean()

    res = train(_model(hidden=32), loss_fn, _data(256), _cfg(steps=150, batch_size=64, lr=3e-3,
                                                              ema_decay=0.9), progress=True)
    first, last = sum(res.history[:10]) / 10, sum(res.history[-10:]) / 10
    assert first > 0.5 and last < 0.1 * first
    assert res.steps_done == 150 and len(res.history) == 150 and res.seconds > 0
    assert not res.model.training and res.ema_model is not None


def test_first_step_is_the_hand_computed_adamw_update():
    # Adam's first step has m_hat = g and v_hat = g^2, so with AdamW's decoupled decay
    # theta_1 = theta_0 (1 - lr wd) - lr g / (|g| + eps), on the batch batch_indices(0, ...).
    torch.manual_seed(0)
    net = nn.Linear(2, 2).double()
    theta0 = [p.detach().clone() for p in net.parameters()]
    data = _data(40, dtype=torch.float64)
    loss_fn = lambda m, x, g: (m(x) - 2 * x).square().mean()  # noqa: E731
    ref_net = copy.deepcopy(net)
    loss_fn(ref_net, data[batch_indices(0, 40, 8, seed=2)], None).backward()
    lr, wd = 0.01, 0.1
    train(net, loss_fn, data, _cfg(steps=1, batch_size=8, lr=lr, weight_decay=wd, seed=2),
          progress=False)
    for p, p0, r in zip(net.parameters(), theta0, ref_net.parameters()):
        expected = p0 * (1 - lr * wd) - lr * r.grad / (r.grad.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, atol=1e-12, rtol=1e-12)


def test_ema_matches_hand_computed_average():
    decay = 0.8
    snaps = []
    res = train(_model(dtype=torch.float64), denoise_loss, _data(dtype=torch.float64),
                _cfg(steps=12, ema_decay=decay),
                progress=False, callback=lambda info: snaps.append(
                    [p.detach().clone() for p in info.model.parameters()]))
    # Reference: ema_1 = theta_1, ema_k = decay * ema_{k-1} + (1 - decay) * theta_k.
    ema = [p.clone() for p in snaps[0]]
    for theta in snaps[1:]:
        ema = [decay * e + (1 - decay) * p for e, p in zip(ema, theta)]
    for e, p in zip(ema, res.ema_model.parameters()):
        torch.testing.assert_close(p, e, atol=1e-12, rtol=1e-12)
    # ...and it genuinely differs from the raw weights.
    assert any((e - p).abs().max() > 1e-6 for e, p in zip(ema, snaps[-1]))


def test_gradient_clipping_caps_the_norm():
    max_norm = 0.05
    pre, post = [], []

    def record(info):
        pre.append(info.grad_norm)
        post.append(torch.cat([p.grad.flatten() for p in info.model.parameters()]).norm().item())

    train(_model(), denoise_loss, _data(), _cfg(steps=8, grad_clip=max_norm), progress=False,
          callback=record)
    assert min(pre) > max_norm  # the test really exercises clipping
    assert max(post) <= max_norm * (1 + 1e-5)
    # Without clipping the gradient the optimizer sees is the reported one.
    pre2, post2 = [], []
    train(_model(), denoise_loss, _data(), _cfg(steps=3), progress=False,
          callback=lambda i: (pre2.append(i.grad_norm), post2.append(torch.cat(
              [p.grad.flatten() for p in i.model.parameters()]).norm().item())))
    assert pre2 == pytest.approx(post2, rel=1e-5)


def test_linear_warmup_schedule():
    lrs = []
    train(_model(), denoise_loss, _data(), _cfg(steps=6, lr=0.1, warmup_steps=4),
          progress=False, callback=lambda i: lrs.append(i.lr))
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


# -- NaN guard ------------------------------------------------------------------------------
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}
    snaps = {}

    def loss_fn(model, x, generator):
        calls["n"] += 1
        loss = denoise_loss(model, x, generator)
        return loss * float("nan") if calls["n"] == 5 else loss

    path = tmp_path / "run.pt"
    model = _model()
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 5: loss=nan.*lower lr"):
        train(model, loss_fn, _data(), _cfg(ckpt_every=2, ckpt_path=str(path)), progress=False,
              callback=lambda i: snaps.__setitem__(i.step, copy.deepcopy(i.model.state_dict())))
    ck = read_checkpoint(path)
    assert ck["step"] == 4 and len(ck["extra"]["history"]) == 4
    for k, v in snaps[4].items():  # no update happened at the bad step
        assert torch.equal(model.state_dict()[k], v) and torch.equal(ck["model"][k], v)


def test_nan_gradient_is_caught():
    def loss_fn(model, x, generator):
        out = model(x, torch.ones(len(x), dtype=torch.long))
        return torch.sqrt((0 * out).sum())  # loss 0, but d sqrt(u)/du = inf at u = 0

    with pytest.raises(NonFiniteLossError, match="non-finite gradient norm at step 1: loss=0.0"):
        train(_model(), loss_fn, _data(), _cfg(), progress=False)


# -- exact resume ---------------------------------------------------------------------------
def _equal_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            _equal_state(a[k], b[k])
        else:
            assert a[k] == b[k], k


def test_resume_is_bit_identical(tmp_path):
    # Dropout draws from torch's global RNG, so restoring it is tested too; the epoch
    # boundary (4 batches per epoch) and warmup are crossed at the resume point.
    kw = dict(steps=20, batch_size=16, lr=1e-2, weight_decay=1e-3, grad_clip=0.5,
              ema_decay=0.9, warmup_steps=12, seed=3, device="cpu")
    straight = train(_model(dropout=0.2), denoise_loss, _data(),
                     TrainConfig(**kw, ckpt_path=str(tmp_path / "a.pt")), progress=False)

    path = str(tmp_path / "b.pt")
    train(_model(dropout=0.2), denoise_loss, _data(),
          TrainConfig(**{**kw, "steps": 10}, ckpt_path=path), progress=False)
    torch.manual_seed(1234)  # disturb every global RNG stream the resume must restore
    resumed = train(_model(seed=7, dropout=0.2), denoise_loss, _data(),
                    TrainConfig(**kw, ckpt_path=path), resume=True, progress=False)

    assert resumed.steps_done == 20 and straight.history == resumed.history
    assert straight.grad_norms == resumed.grad_norms
    _equal_state(straight.model.state_dict(), resumed.model.state_dict())
    _equal_state(straight.ema_model.state_dict(), resumed.ema_model.state_dict())
    a, b = read_checkpoint(tmp_path / "a.pt"), read_checkpoint(path)
    _equal_state(a["optimizer"], b["optimizer"])
    _equal_state(a["ema"], b["ema"])
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])


def test_resume_without_checkpoint_starts_fresh_and_done_run_is_noop(tmp_path):
    path = str(tmp_path / "c.pt")
    r1 = train(_model(), denoise_loss, _data(), _cfg(steps=3, ckpt_path=path), resume=True,
               progress=False)
    assert r1.steps_done == 3 and read_checkpoint(path)["step"] == 3
    r2 = train(_model(seed=5), denoise_loss, _data(), _cfg(steps=3, ckpt_path=path),
               resume=True, progress=False)
    assert r2.history == r1.history and r2.steps_done == 3
    _equal_state(r1.model.state_dict(), r2.model.state_dict())


def test_resume_refuses_different_seed(tmp_path):
    path = str(tmp_path / "c.pt")
    train(_model(), denoise_loss, _data(), _cfg(steps=2, ckpt_path=path), progress=False)
    with pytest.raises(CheckpointMismatchError, match="seed was 0, now 1"):
        train(_model(), denoise_loss, _data(), _cfg(steps=4, seed=1, ckpt_path=path),
              resume=True, progress=False)


# -- argument errors ------------------------------------------------------------------------
def test_train_argument_errors():
    m, d = _model(), _data(32)
    with pytest.raises(ValueError, match="batch_size=64 is larger than the data set"):
        train(m, denoise_loss, d, _cfg(batch_size=64), progress=False)
    with pytest.raises(ValueError, match="share the first dimension"):
        train(m, denoise_loss, (d, torch.zeros(5)), _cfg(), progress=False)
    with pytest.raises(TypeError, match="data must be a tensor"):
        train(m, denoise_loss, [1, 2], _cfg(), progress=False)
    with pytest.raises(ValueError, match="resume=True needs TrainConfig.ckpt_path"):
        train(m, denoise_loss, d, _cfg(), resume=True, progress=False)
    with pytest.raises(ValueError, match="scalar tensor"):
        train(m, lambda mo, x, g: (mo(x, torch.ones(len(x), dtype=torch.long)) - x).square(),
              d, _cfg(), progress=False)
    with pytest.raises(ValueError, match="does not depend on the model"):
        train(m, lambda mo, x, g: x.square().mean(), d, _cfg(), progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        train(m, denoise_loss, d, {"steps": 3}, progress=False)


def test_amp_on_cpu_warns_and_trains_in_float32():
    with pytest.warns(UserWarning, match="amp=True is used on CUDA only"):
        res = train(_model(), denoise_loss, _data(), _cfg(steps=2, amp=True), progress=False)
    assert len(res.history) == 2


def test_amp_cpu_autocasts_the_loss_to_bfloat16_and_keeps_float32_weights():
    seen = []

    def loss_fn(m, x, g):
        out = m(x, torch.zeros(x.shape[0], dtype=torch.long))
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return (out.float() - x).square().mean()

    res = train(_model(), loss_fn, _data(), _cfg(steps=2, amp_cpu=True), progress=False)
    assert seen == [(True, torch.bfloat16)] * 2
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
    seen.clear()
    train(_model(), loss_fn, _data(), _cfg(steps=1), progress=False)  # off by default
    assert seen == [(False, torch.float32)]


def test_train_moves_model_and_accepts_plain_modules():
    # Any nn.Module works with train(); it needs no config (checkpoints then skip the check).
    net = nn.Linear(2, 2)
    res = train(net, lambda m, x, g: (m(x) - 2 * x).square().mean(), _data(),
                _cfg(steps=5), progress=False)
    assert res.model is net and len(res.history) == 5


def test_cosine_lr_decay_follows_the_formula():
    import math

    from dmlib.training import TrainConfig, train

    lrs = []
    cfg = TrainConfig(steps=10, batch_size=4, lr=0.1, warmup_steps=2, lr_decay="cosine",
                      ema_decay=None)
    train(torch.nn.Linear(2, 1), lambda m, b, g: m(b).pow(2).mean(), torch.randn(16, 2), cfg,
          progress=False, callback=lambda info: lrs.append(info.lr))
    want = [0.1 * min(1, k / 2) * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(1, 11)]
    assert lrs == pytest.approx(want) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay="step")


def test_ema_warmup_follows_the_formula():
    from dmlib.training import TrainConfig, train

    thetas = []
    cfg = TrainConfig(steps=6, batch_size=4, lr=0.1, ema_decay=0.9, ema_warmup=True, grad_clip=None)
    model = torch.nn.Linear(1, 1, bias=False)
    res = train(model, lambda m, b, g: (m(b) - 1).pow(2).mean(), torch.randn(16, 1), cfg,
                progress=False, callback=lambda i: thetas.append(float(i.model.weight.detach())))
    ema = thetas[0]
    for k in range(2, 7):  # ema_1 = theta_1; then d_k = min(0.9, k / (k + 9))
        d = min(0.9, k / (k + 9))
        ema = d * ema + (1 - d) * thetas[k - 1]
    assert float(res.ema_model.weight) == pytest.approx(ema, rel=1e-6)
