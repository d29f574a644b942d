"""Tests for dmlib.checkpoint: round trip, mismatch errors, corruption, atomic writes."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import dmlib.checkpoint as ckpt_mod
from dmlib.checkpoint import (CheckpointCorruptError, CheckpointMismatchError, get_rng_state,
                              load_checkpoint, load_model, read_checkpoint, save_checkpoint,
                              set_rng_state)
from dmlib.models import MLPConfig, MLPDenoiser, UNet, UNetConfig

CFG = MLPConfig(hidden=16, depth=2, time_dim=8)


def _trained(seed=0):
    """A tiny MLP, its Adam state and EMA after two steps (so every state is non-trivial)."""
    torch.manual_seed(seed)
    m = MLPDenoiser(CFG)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    ema = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    for _ in range(2):
        opt.zero_grad()
        x = torch.randn(8, 2)
        (m(x, torch.randint(1, 10, (8,))) - x).square().mean().backward()
        opt.step()
        ema.update_parameters(m)
    return m, opt, ema


def test_round_trip_restores_everything(tmp_path):
    m, opt, ema = _trained()
    g = torch.Generator().manual_seed(5)
    torch.randn(3, generator=g)  # advance it so the state is not just the seed
    path = save_checkpoint(tmp_path / "run" / "c.pt", m, opt, ema, step=7,
                           extra={"history": [1.5, 0.5], "note": "hi"}, generator=g)
    assert path.is_file()
    expected_next = torch.randn(4, generator=g)

    m2, opt2, ema2 = _trained(seed=1)  # different values everywhere
    g2 = torch.Generator().manual_seed(99)
    info = load_checkpoint(path, m2, opt2, ema2, generator=g2)
    assert info["step"] == 7 and info["extra"] == {"history": [1.5, 0.5], "note": "hi"}
    assert info["model_class"] == "MLPDenoiser" and info["model_config"]["hidden"] == 16
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ema.state_dict().values(), ema2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for i in s1:
        for k in s1[i]:
            assert torch.equal(s1[i][k], s2[i][k])
    assert torch.equal(torch.randn(4, generator=g2), expected_next)


def test_checkpoint_loads_with_weights_only(tmp_path):
    m, opt, ema = _trained()
    save_checkpoint(tmp_path / "c.pt", m, opt, ema, step=1, generator=torch.Generator())
    d = torch.load(tmp_path / "c.pt", weights_only=True)  # no pickled code needed
    assert d["format_version"] == ckpt_mod.FORMAT_VERSION


def test_rng_state_round_trip():
    g = torch.Generator().manual_seed(3)
    state = get_rng_state(g)
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)],
             np.random.randn(), torch.rand(3, generator=g))
    torch.manual_seed(123); np.random.seed(123); random.seed(123); g.manual_seed(123)
    set_rng_state(state, g)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)],
             np.random.randn(), torch.rand(3, generator=g))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3] and torch.equal(first[4], again[4])


def test_different_class_is_rejected(tmp_path):
    m, _, _ = _trained()
    save_checkpoint(tmp_path / "c.pt", m)
    with pytest.raises(CheckpointMismatchError, match="holds a MLPDenoiser but the model is a UNet"):
        load_checkpoint(tmp_path / "c.pt", UNet(UNetConfig(base_channels=8, num_res_blocks=1)))


def test_different_config_is_rejected_naming_fields(tmp_path):
    m, _, _ = _trained()
    save_checkpoint(tmp_path / "c.pt", m)
    other = MLPDenoiser(MLPConfig(hidden=32, depth=2, time_dim=8, norm="none"))
    with pytest.raises(CheckpointMismatchError,
                       match=r"hidden: checkpoint 16 vs model 32; norm: checkpoint 'layer' vs model 'none'"):
        load_checkpoint(tmp_path / "c.pt", other)
    assert issubclass(CheckpointMismatchError, ValueError)


def test_state_dict_shape_and_key_mismatch(tmp_path):
    # Plain modules have no config: the state dict check is what catches them.
    save_checkpoint(tmp_path / "c.pt", nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(CheckpointMismatchError,
                       match=r"parameter '0.weight' has shape \(3, 2\) in the checkpoint but \(4, 2\)"):
        load_checkpoint(tmp_path / "c.pt", nn.Sequential(nn.Linear(2, 4)))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['1.weight', '1.bias'\]"):
        load_checkpoint(tmp_path / "c.pt", nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))


def test_missing_ema_or_optimizer_in_checkpoint(tmp_path):
    m, opt, ema = _trained()
    save_checkpoint(tmp_path / "c.pt", m)
    with pytest.raises(CheckpointMismatchError, match="no EMA weights"):
        load_checkpoint(tmp_path / "c.pt", m, ema=ema)
    with pytest.raises(CheckpointMismatchError, match="no optimizer state"):
        load_checkpoint(tmp_path / "c.pt", m, optimizer=opt)


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(p, MLPDenoiser(CFG))


def test_truncated_and_garbage_files_are_reported(tmp_path):
    m, opt, ema = _trained()
    p = save_checkpoint(tmp_path / "c.pt", m, opt, ema)
    data = p.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorruptError, match="truncated.pt.*truncated, corrupt"):
        load_checkpoint(bad, MLPDenoiser(CFG))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointCorruptError, match="junk.pt"):
        read_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointCorruptError, match="not a dmlib checkpoint"):
        read_checkpoint(foreign)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    m, opt, ema = _trained()
    p = save_checkpoint(tmp_path / "c.pt", m, opt, ema, step=1)
    before = p.read_bytes()

    def failing_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")  # partial write, then the "crash"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, m, opt, ema, step=2)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert read_checkpoint(p)["step"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]  # no temporary file left behind


def test_save_overwrites_atomically(tmp_path):
    m, opt, ema = _trained()
    p = tmp_path / "c.pt"
    save_checkpoint(p, m, step=1)
    save_checkpoint(p, m, step=2)
    assert read_checkpoint(p)["step"] == 2 and os.listdir(tmp_path) == ["c.pt"]


def test_load_model_rebuilds_and_prefers_ema(tmp_path):
    m, opt, ema = _trained()
    p = save_checkpoint(tmp_path / "c.pt", m, opt, ema)
    got = load_model(p)
    assert isinstance(got, MLPDenoiser) and got.config == CFG and not got.training
    for a, b in zip(got.state_dict().values(), ema.module.state_dict().values()):
        assert torch.equal(a, b)
    raw = load_model(p, use_ema=False)
    for a, b in zip(raw.state_dict().values(), m.state_dict().values()):
        assert torch.equal(a, b)
    # The EMA differs from the raw weights after two steps with decay 0.5.
    assert any(not torch.equal(a, b) for a, b in zip(got.state_dict().values(),
                                                     raw.state_dict().values()))


def test_save_checkpoint_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        save_checkpoint(tmp_path / "c.pt", "model")
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        save_checkpoint(tmp_path / "c.pt", nn.Linear(1, 1), step=-1)
