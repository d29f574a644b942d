"""Conditioning and classifier-free guidance (chapter 9).

A class-conditional network is called ``model(xt, t, y)`` with labels y in 0..K-1 and the
null label K ("no label"). Classifier-free guidance (Ho & Salimans 2022) trains one such
network with the label replaced by the null label a fraction ``p_uncond`` of the time,
then samples with

    eps_w(x_t, y) = (1 + w) eps(x_t, y) - w eps(x_t, null)                 (CFG)

which is, by Bayes' rule for scores (grad log p(x_t|y) = grad log p(x_t) + grad log p(y|x_t)),
the eps of the score  grad log p(x_t) + (1 + w) grad log p(y | x_t). w = 0 is the plain
conditional model. The combination is linear in the network's output, so it applies
unchanged to x0- and v-predicting networks (each is a fixed linear map of eps given x_t).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _check_labels(y: torch.Tensor, num_classes: int, allow_null: bool = True) -> torch.Tensor:
    top = num_classes if allow_null else num_classes - 1
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype != torch.long:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"labels y must be a 1-D long tensor (B,), got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > top):
        raise ValueError(f"labels must lie in 0..{top}"
                         f"{f' ({num_classes} = the null label)' if allow_null else ''}, got "
                         f"{int(y.min())}..{int(y.max())}")
    return y


def drop_labels(y: torch.Tensor, p_uncond: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``p_uncond`` (chapter 9): the
    label dropout that trains the unconditional model of CFG inside the conditional one.
    y: (B,) long -> (B,) long; a new tensor (y is not modified)."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond!r}")
    _check_labels(y, null_label)
    u = torch.rand(y.shape, generator=generator,
                   device=generator.device if generator is not None else "cpu").to(y.device)
    return torch.where(u < p_uncond, torch.full_like(y, null_label), y)


class LabelledModel(nn.Module):
    """``model(xt, t)`` that calls a conditional network as ``net(xt, t, y)`` with fixed
    labels y (B,) (chapter 9): what the unconditional losses and samplers can call.
    y=None: the null label for every example (the network's unconditional model)."""

    def __init__(self, net: nn.Module, y: torch.Tensor | None) -> None:
        super().__init__()
        self.net, self.y = net, y

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.y is None:
            return self.net(xt, t, None)
        if xt.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.y.shape[0]} labels for a batch of {xt.shape[0]}")
        return self.net(xt, t, self.y.to(xt.device))


class GuidedModel(nn.Module):
    """Classifier-free guidance as a model ``(xt, t) -> (1 + w) net(xt, t, y) - w net(xt, t,
    null)`` (chapter 9). y: (B,) labels in 0..K-1 (or K); w >= 0 (0: the conditional model,
    one network call per step; else two, batched together)."""

    def __init__(self, net: nn.Module, y: torch.Tensor, w: float, null_label: int) -> None:
        super().__init__()
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"the guidance scale w must be a number >= 0, got {w!r}")
        self.net, self.y = net, _check_labels(y, null_label)
        self.w, self.null_label = float(w), null_label

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = xt.shape[0]
        if B != self.y.shape[0]:
            raise ValueError(f"{self.y.shape[0]} labels for a batch of {B}")
        y = self.y.to(xt.device)
        if self.w == 0.0:
            return self.net(xt, t, y)
        null = torch.full_like(y, self.null_label)
        both = self.net(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = both[:B], both[B:]
        return (1 + self.w) * cond - self.w * uncond


def guided(net: nn.Module, y: torch.Tensor | None, w: float, num_classes: int
           ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The model a sampler calls for labels ``y`` at guidance scale ``w`` (chapter 9):
    ``GuidedModel`` for w > 0, ``LabelledModel`` for w = 0; y=None: all null labels (the
    unconditional model inside a CFG network)."""
    if not num_classes:
        raise ValueError("guidance needs a class-conditional model (spec.num_classes > 0)")
    if y is None:
        if w:
            raise ValueError("guidance (w > 0) needs labels y")
        return LabelledModel(net, None)
    if w == 0:
        return LabelledModel(net, _check_labels(y, num_classes))
    return GuidedModel(net, y, w, num_classes)


__all__ = ["drop_labels", "LabelledModel", "GuidedModel", "guided"]
