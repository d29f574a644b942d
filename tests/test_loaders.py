"""Tests for dmlib.data.loaders: seeded shuffling, batch shapes, endless epochs, errors."""

import pytest
import torch

from dmlib.data.loaders import infinite_batches, tensor_loader


def test_batches_cover_an_epoch_once():
    x = torch.arange(20).float().reshape(10, 2)
    y = torch.arange(10)
    loader = tensor_loader(x, y, batch_size=3, seed=0)
    batches = list(loader)
    assert len(batches) == 3  # drop_last: 10 // 3 full batches
    seen = torch.cat([b[1] for b in batches])
    assert len(set(seen.tolist())) == 9  # no repeats within an epoch
    for xb, yb in batches:
        assert xb.shape == (3, 2) and yb.shape == (3,)
        assert torch.equal(xb, x[yb])  # rows stay paired across tensors


def test_seed_reproducible_and_shuffled():
    x = torch.arange(100)
    a = [b[0] for b in tensor_loader(x, batch_size=10, seed=1)]
    b = [b[0] for b in tensor_loader(x, batch_size=10, seed=1)]
    c = [b[0] for b in tensor_loader(x, batch_size=10, seed=2)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    assert not torch.equal(torch.cat(a), x)  # actually shuffled
    # Independent of the global RNG state.
    torch.manual_seed(123)
    d = [b[0] for b in tensor_loader(x, batch_size=10, seed=1)]
    assert all(torch.equal(u, v) for u, v in zip(a, d))


def test_no_shuffle_keeps_order_and_keep_last():
    x = torch.arange(7)
    batches = [b[0].tolist() for b in tensor_loader(x, batch_size=3, shuffle=False, drop_last=False)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    # drop_last=False allows batch_size > n.
    assert [b[0].tolist() for b in tensor_loader(x, batch_size=10, shuffle=False, drop_last=False)] == [list(range(7))]


def test_infinite_batches_cycles_epochs_with_new_shuffles():
    x = torch.arange(6)
    it = infinite_batches(tensor_loader(x, batch_size=3, seed=0))
    batches = [next(it)[0] for _ in range(8)]  # 4 epochs of 2 batches
    epochs = [torch.cat(batches[i:i + 2]) for i in range(0, 8, 2)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(6))
    assert len({tuple(e.tolist()) for e in epochs}) > 1  # reshuffled between epochs


def test_infinite_batches_empty_loader_raises():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2)), batch_size=5,
                                         drop_last=True)
    with pytest.raises(ValueError, match="no batch"):
        next(infinite_batches(loader))


@pytest.mark.parametrize("args, kwargs, err, match", [
    ((), dict(batch_size=2), ValueError, "at least one tensor"),
    ((torch.zeros(0, 2),), dict(batch_size=2), ValueError, "empty data"),
    ((torch.zeros(5, 2), torch.zeros(4)), dict(batch_size=2), ValueError, r"same first dimension.*\[5, 4\]"),
    ((torch.zeros(5, 2),), dict(batch_size=0), ValueError, "batch_size must be a positive int"),
    ((torch.zeros(5, 2),), dict(batch_size=8), ValueError, "larger than the data"),
    (([1, 2, 3],), dict(batch_size=2), TypeError, r"tensors\[0\] must be a torch.Tensor"),
    ((torch.tensor(1.0),), dict(batch_size=1), ValueError, "scalar"),
    ((torch.zeros(5),), dict(batch_size=2, seed=1.5), TypeError, "seed must be an int"),
])
def test_errors(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        tensor_loader(*args, **kwargs)
