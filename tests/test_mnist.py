"""Tests for dmlib.data.mnist: README sanity facts, checksums, malformed files, errors."""

import gzip
import hashlib
import os
import shutil
import struct

import numpy as np
import pytest
import torch

import dmlib.data.mnist as mn
from dmlib.data.mnist import MNIST_DIR, MNIST_SHA256, load_mnist, mnist_dir, verify_mnist

FILES = sorted(MNIST_SHA256)


@pytest.fixture(scope="module")
def train01():
    return load_mnist("train", scale="[0,1]")


def test_verify_mnist_matches_hashlib_and_readme():
    digests = verify_mnist()
    assert sorted(digests) == FILES
    readme = (MNIST_DIR / "README.md").read_text()
    for name, digest in digests.items():
        # Independent: hashlib on the whole file, and the README's table.
        assert digest == hashlib.sha256((MNIST_DIR / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in " ".join(readme.split())


def test_train_sanity_facts(train01):
    x, y = train01
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (60000,) and y.dtype == torch.long
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(x.double().mean()) == pytest.approx(0.1307, abs=5e-5)
    assert float(x.double().std()) == pytest.approx(0.3081, abs=5e-5)
    assert torch.bincount(y, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421,
                                                        5918, 6265, 5851, 5949]


def test_scales_agree_and_limit(train01):
    x01, y = train01
    u, yu = load_mnist("train", scale="uint8", limit=100)
    xm, ym = load_mnist("train", scale="[-1,1]", limit=100)
    assert u.dtype == torch.uint8 and u.shape == (100, 1, 28, 28)
    assert torch.equal(yu, y[:100]) and torch.equal(ym, y[:100])
    assert torch.allclose(u.double() / 255, x01[:100].double(), atol=1e-7)
    assert torch.allclose(xm.double(), 2 * x01[:100].double() - 1, atol=1e-6)
    assert float(xm.min()) == -1.0 and float(xm.max()) == 1.0


def test_test_split_matches_raw_bytes():
    x, y = load_mnist("test", scale="uint8")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    # Brute-force reference: the raw IDX bytes after the 16/8-byte headers.
    raw_img = gzip.open(MNIST_DIR / "t10k-images-idx3-ubyte.gz").read()
    raw_lab = gzip.open(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read()
    assert struct.unpack(">iiii", raw_img[:16]) == (2051, 10000, 28, 28)
    assert x[1234, 0].flatten().tolist() == list(raw_img[16 + 1234 * 784: 16 + 1235 * 784])
    assert y.tolist() == list(raw_lab[8:])


def test_files_are_not_modified():
    before = {n: ((MNIST_DIR / n).stat().st_mtime_ns, (MNIST_DIR / n).stat().st_size) for n in FILES}
    load_mnist("test", limit=5)
    verify_mnist()
    after = {n: ((MNIST_DIR / n).stat().st_mtime_ns, (MNIST_DIR / n).stat().st_size) for n in FILES}
    assert before == after


@pytest.fixture
def copy_dir(tmp_path):
    for name in FILES:
        shutil.copy(MNIST_DIR / name, tmp_path / name)
    return tmp_path


def test_corrupted_copy_fails_checksum(copy_dir):
    verify_mnist(copy_dir)  # a faithful copy passes
    path = copy_dir / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"checksum mismatch .*t10k-labels-idx1-ubyte\.gz.*"
                                         r"expected sha256 b91679a0.*got [0-9a-f]{64}.*git checkout -- "
                                         r"data/mnist/t10k-labels-idx1-ubyte\.gz"):
        load_mnist("test", root=copy_dir)
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_mnist(copy_dir)
    # Train files are untouched, so the train split still loads from the copy.
    assert load_mnist("train", root=copy_dir, limit=3)[1].tolist() == [5, 0, 4]


def test_missing_file(copy_dir):
    (copy_dir / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"not found: .*train-labels-idx1-ubyte\.gz.*git checkout"):
        verify_mnist(copy_dir)
    with pytest.raises(FileNotFoundError, match=str(copy_dir.resolve() / "train-labels-idx1-ubyte.gz")):
        load_mnist("train", root=copy_dir)


def test_env_var_data_dir(copy_dir, monkeypatch, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    shutil.copytree(copy_dir, data / "mnist")
    monkeypatch.setenv("DMLIB_DATA_DIR", str(data))
    assert mnist_dir() == data / "mnist"
    (data / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist("test")
    monkeypatch.delenv("DMLIB_DATA_DIR")
    assert mnist_dir() == MNIST_DIR


def write_idx(path, magic, dims, payload):
    header = struct.pack(">" + "i" * (1 + len(dims)), magic, *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def test_custom_idx_with_verify_false(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), imgs.tobytes())
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([7, 0, 9]))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist("test", root=tmp_path)  # verification is on by default
    x, y = load_mnist("test", root=tmp_path, scale="uint8", verify=False)
    assert np.array_equal(x[:, 0].numpy(), imgs) and y.tolist() == [7, 0, 9]


@pytest.mark.parametrize("case, match", [
    ("truncated", r"expected 2368 .*truncated"),
    ("magic", r"magic number 2049, expected 2051"),
    ("dims", r"images are 32x32"),
    ("short", r"shorter than its 16-byte header"),
    ("notgzip", r"cannot decompress"),
    ("count", r"3 images in .* but 2 labels"),
])
def test_malformed_idx(tmp_path, case, match):
    img, lab = tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz"
    payload = bytes(3 * 784)
    write_idx(lab, 2049, (2,) if case == "count" else (3,), bytes([1, 2, 3][: 2 if case == "count" else 3]))
    if case == "truncated":
        write_idx(img, 2051, (3, 28, 28), payload[:-100])
    elif case == "magic":
        write_idx(img, 2049, (3, 28, 28), payload)
    elif case == "dims":
        write_idx(img, 2051, (3, 32, 32), bytes(3 * 1024))
    elif case == "short":
        with gzip.open(img, "wb") as f:
            f.write(b"\x00\x00\x08")
    elif case == "notgzip":
        img.write_bytes(b"this is not a gzip file")
    else:
        write_idx(img, 2051, (3, 28, 28), payload)
    with pytest.raises(ValueError, match=match) as info:
        load_mnist("test", root=tmp_path, verify=False)
    if case != "count":
        assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), bytes(3 * 784))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes(3))
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-6])  # cut the gzip trailer
    with pytest.raises(ValueError, match=r"cannot decompress .*t10k-labels-idx1-ubyte\.gz"):
        load_mnist("test", root=tmp_path, verify=False)


def test_label_out_of_range(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (2, 28, 28), bytes(2 * 784))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes([3, 12]))
    with pytest.raises(ValueError, match="label 12 outside 0..9"):
        load_mnist("test", root=tmp_path, verify=False)


def test_verification_is_cached(copy_dir, monkeypatch):
    verify_mnist(copy_dir)
    calls = []
    monkeypatch.setattr(mn, "_sha256_file", lambda p: calls.append(p) or "0" * 64)
    verify_mnist(copy_dir)  # same path, size and mtime: no re-hashing
    assert calls == []
    # A rewritten file (new mtime) is hashed again.
    p = copy_dir / "t10k-labels-idx1-ubyte.gz"
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data)
    os.utime(p, ns=(0, 12345))
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_mnist(copy_dir)
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="val"), r"unknown MNIST split 'val'; choose 'train' or 'test'"),
    (dict(scale="[0,255]"), r"unknown scale '\[0,255\]'; choose one of"),
    (dict(limit=0), "limit must be a positive int"),
    (dict(limit=2.5), "limit must be a positive int"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_mnist(**kwargs)
