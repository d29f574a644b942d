"""Input validation shared by dmlib: errors that name the problem and what to do."""

from __future__ import annotations

import functools
from typing import Callable, Sequence, TypeVar

import torch


def as_timesteps(t: int | torch.Tensor, T: int, *, allow_zero: bool = False,
                 name: str = "t") -> torch.Tensor:
    """Turn ``t`` (an int, or an integer tensor of shape () or (B,)) into a long tensor,
    checking the lecture's convention t in 1..T (or 0..T with ``allow_zero``)."""
    lo = 0 if allow_zero else 1
    if isinstance(t, bool):
        raise TypeError(f"{name} must be an integer timestep, got a bool")
    if isinstance(t, int):
        t = torch.tensor(t, dtype=torch.long)
    elif isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex():
            raise TypeError(
                f"{name} must hold integer timesteps (torch.long), got dtype {t.dtype}; "
                f"use torch.randint(1, T + 1, (B,)) to draw them")
        if t.dim() > 1:
            raise ValueError(f"{name} must be a scalar or a 1-D tensor of shape (B,), "
                             f"got shape {tuple(t.shape)}")
        t = t.long()
    else:
        raise TypeError(f"{name} must be an int or a torch.Tensor of ints, got {type(t).__name__}")
    if t.numel() and (int(t.min()) < lo or int(t.max()) > T):
        bad = int(t.min()) if int(t.min()) < lo else int(t.max())
        hint = ""
        if bad == 0 and lo == 1:
            hint = (" dmlib uses the lecture's 1-based t (t=1 is the first noising step); "
                    "if you drew t with torch.randint(0, T, ...), add 1")
        elif bad > T:
            hint = " (t=T is the last step: draw with torch.randint(1, T + 1, ...))"
        raise ValueError(f"{name} out of range: expected {lo} <= {name} <= T={T}, got {bad}.{hint}")
    return t


def check_batch(x: torch.Tensor, t: torch.Tensor, name: str = "x") -> None:
    """``t`` must be a scalar or have one entry per batch element of ``x``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if t.dim() == 1:
        if x.dim() == 0 or x.shape[0] != t.shape[0]:
            raise ValueError(
                f"shape mismatch: t has {t.shape[0]} timesteps but {name} has shape "
                f"{tuple(x.shape)}; t needs one entry per row of {name} (shape (B,)) or a scalar")


def check_same_shape(**tensors: torch.Tensor) -> None:
    """All named tensors must have the same shape."""
    items = list(tensors.items())
    for n, v in items:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{n} must be a torch.Tensor, got {type(v).__name__}")
    ref_name, ref = items[0]
    for n, v in items[1:]:
        if v.shape != ref.shape:
            raise ValueError(f"shape mismatch: {ref_name} has shape {tuple(ref.shape)} but "
                             f"{n} has shape {tuple(v.shape)}; they must be equal")


def check_shape(x: torch.Tensor, expected: Sequence[int | None], name: str = "x") -> None:
    """``x`` must match ``expected``; ``None`` entries match any size."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"wrong shape for {name}: expected {want}, got {tuple(x.shape)}")


def call_model(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], xt: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """``model(xt, t)``, checked to return a tensor shaped like ``xt``."""
    out = model(xt, t)
    if not isinstance(out, torch.Tensor) or out.shape != xt.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return a tensor shaped like x_t {tuple(xt.shape)}, "
                         f"got {got}")
    return out


F = TypeVar("F", bound=Callable)


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: a call that passes an old keyword (``sigma=``) raises a TypeError that
    names the new one (``variance=``), instead of a bare "unexpected keyword"."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    raise TypeError(f"{fn.__name__}() got the old keyword {old}=; it is called "
                                    f"{new}= now (same values, e.g. {new}='beta' or "
                                    f"{new}='beta_tilde')")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco
