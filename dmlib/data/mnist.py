"""MNIST from the repository's ``data/mnist/``, checksummed (chapters 3, 7).

The four original IDX files (gzip) are committed under ``data/mnist/`` so that a fresh
clone works offline; nothing is downloaded. Before parsing, the SHA-256 of each ``.gz``
is checked against ``MNIST_SHA256`` (the table in ``data/mnist/README.md``); a file that
was changed, truncated or is missing gives an error that says how to restore it. The
files are only ever opened for reading.

Where the files are looked for (first match wins):
``root`` argument (the folder holding the four ``.gz`` files) >
``$DMLIB_DATA_DIR/mnist`` (``DMLIB_DATA_DIR`` is the data folder, like the repo's ``data/``) >
``MNIST_DIR`` (the repo's ``data/mnist``).

IDX format (big-endian): int32 magic (2051 = images, 2049 = labels), int32 sizes
(images: N, 28, 28; labels: N), then N*28*28 (or N) unsigned bytes.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

#: The repo's ``data/mnist`` (found relative to the package: dmlib/data/mnist.py -> repo/data/mnist).
MNIST_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "mnist"

#: file -> SHA-256 of the .gz as committed (data/mnist/README.md).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}

#: split -> (images file, labels file)
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_SCALES = ("[-1,1]", "[0,1]", "uint8")
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049

# (resolved path, size, mtime_ns) -> sha256 hex digest; a changed file gets a new key.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder searched for the MNIST files: ``root``, else ``$DMLIB_DATA_DIR/mnist``, else
    ``MNIST_DIR``. Chapter 7."""
    if root is not None:
        return Path(root)
    env = os.environ.get("DMLIB_DATA_DIR", "").strip()
    return Path(env) / "mnist" if env else MNIST_DIR


def _restore_hint(name: str) -> str:
    return (f"restore it with `git checkout -- data/mnist/{name}` from the repository root "
            f"(or, with a custom root / DMLIB_DATA_DIR, copy it from the repo's data/mnist/)")


def _path(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file not found: {path.resolve()}; {_restore_hint(name)}")
    return path


def _sha256_file(path: Path) -> str:
    from ..checkpoint import sha256_file

    return sha256_file(path)


def _verify_file(path: Path, name: str) -> str:
    """Check one file's SHA-256 against ``MNIST_SHA256`` (cached per process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    digest = _sha256_file(path)
    expected = MNIST_SHA256[name]
    if digest != expected:
        raise ValueError(
            f"checksum mismatch for MNIST file {path.resolve()}: expected sha256 {expected}, "
            f"got {digest}. The file was modified or is damaged; {_restore_hint(name)}")
    _VERIFIED[key] = digest
    return digest


def verify_mnist(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Verify the SHA-256 of all four MNIST files; return {file name: digest}.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a mismatch, each
    naming the file and how to restore it. Results are cached per process (keyed by path,
    size and modification time), so repeated calls are cheap. Chapter 7.
    """
    directory = mnist_dir(root)
    return {name: _verify_file(_path(directory, name), name) for name in MNIST_SHA256}


def _parse_idx(raw: bytes, path: Path, magic: int, ndim: int) -> np.ndarray:
    """Decompress and parse one gzipped IDX file of unsigned bytes; errors name the file."""
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"cannot decompress MNIST file {path}: {e} (truncated or not gzip?); "
                         f"{_restore_hint(path.name)}") from e
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"malformed IDX file {path}: {len(data)} bytes, shorter than its "
                         f"{header}-byte header; {_restore_hint(path.name)}")
    got_magic, *dims = (int(v) for v in np.frombuffer(data, dtype=">i4", count=1 + ndim))
    if got_magic != magic:
        raise ValueError(f"malformed IDX file {path}: magic number {got_magic}, expected "
                         f"{magic} ({'images' if magic == _IMAGES_MAGIC else 'labels'}); "
                         f"{_restore_hint(path.name)}")
    if ndim == 3 and dims[1:] != [28, 28]:
        raise ValueError(f"malformed IDX file {path}: images are {dims[1]}x{dims[2]}, "
                         f"expected 28x28")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"malformed IDX file {path}: {len(data)} bytes, expected {expected} "
                         f"for dimensions {dims} (truncated?); {_restore_hint(path.name)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read(directory: Path, name: str, magic: int, ndim: int, verify: bool) -> np.ndarray:
    path = _path(directory, name)
    if verify:
        _verify_file(path, name)
    with open(path, "rb") as f:  # read-only
        raw = f.read()
    return _parse_idx(raw, path, magic, ndim)


def load_mnist(split: str = "train", root: str | os.PathLike | None = None,
               scale: str = "[-1,1]", limit: int | None = None,
               verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as tensors. Chapters 3, 7.

    ``split``: ``"train"`` (60,000) or ``"test"`` (10,000). ``scale``:
    ``"[-1,1]"`` -> x = u / 127.5 - 1 (the range DDPM trains on), ``"[0,1]"`` -> x = u / 255,
    ``"uint8"`` -> the raw bytes u. ``limit``: keep only the first ``limit`` examples.
    ``verify=False`` skips the checksum (for custom IDX files; the format is still checked).

    Returns ``(images, labels)``: images (N, 1, 28, 28) float32 (uint8 for ``"uint8"``),
    labels (N,) long in 0..9.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; choose 'train' or 'test'")
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {list(_SCALES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    directory = mnist_dir(root)
    img_name, lab_name = MNIST_FILES[split]
    images = _read(directory, img_name, _IMAGES_MAGIC, 3, verify)
    labels = _read(directory, lab_name, _LABELS_MAGIC, 1, verify)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST {split}: {images.shape[0]} images in {img_name} but "
                         f"{labels.shape[0]} labels in {lab_name}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"malformed MNIST labels in {directory / lab_name}: label "
                         f"{int(labels.max())} outside 0..9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # copy: frombuffer arrays are read-only
    y = torch.from_numpy(labels.astype(np.int64))
    if scale == "[0,1]":
        x = x.float().div_(255.0)  # in place: the full train set is 188 MB in float32
    elif scale == "[-1,1]":
        x = x.float().div_(127.5).sub_(1.0)
    return x, y
