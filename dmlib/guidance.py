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
Many libraries (e.g. diffusers) write ``guidance_scale`` = 1 + w: their scale 1 is our w = 0.

Classifier guidance (Dhariwal & Nichol 2021, Alg. 2 in eps form) uses a separate
noise-aware classifier p_phi(y | x_t) instead, with s_t = sqrt(1 - alpha_bar_t):

    eps_hat(x_t, y) = eps(x_t) - (1 + w) s_t grad_x log p_phi(y | x_t)          (CG)

(their "scale" is 1 + w here, so w means the same in CG and CFG: w = 0 gives, with the exact
classifier, exactly the eps of p(x_t | y), because eps = -s_t grad log p and Bayes' rule).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .forward import draw_noise, q_sample
from .losses import diffusion_loss
from .schedules import Schedule


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


def classifier_guided_eps(eps: torch.Tensor, grad_log_py: torch.Tensor,
                          alpha_bar: float | torch.Tensor, w: float) -> torch.Tensor:
    """Classifier guidance as an eps correction (chapter 9; Dhariwal & Nichol 2021, Alg. 2):

        eps_hat = eps - (1 + w) sqrt(1 - alpha_bar_t) grad_x log p(y | x_t)

    ``eps``, ``grad_log_py``: (B, ...); ``alpha_bar``: a float or a (B,) tensor (one
    alpha_bar_t per example). w >= 0; w = 0 with the exact p(y | x_t) gives the eps of
    p(x_t | y) exactly (Bayes' rule for scores)."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
        raise ValueError(f"the guidance scale w must be a number >= 0, got {w!r}")
    if eps.shape != grad_log_py.shape:
        raise ValueError(f"eps {tuple(eps.shape)} and grad_log_py {tuple(grad_log_py.shape)} "
                         f"must have the same shape")
    ab = torch.as_tensor(alpha_bar, dtype=eps.dtype, device=eps.device)
    if ab.dim() == 1:
        ab = ab.reshape(-1, *([1] * (eps.dim() - 1)))
    return eps - (1 + w) * (1 - ab).sqrt() * grad_log_py


def class_log_prob_grad(classifier: nn.Module, xt: torch.Tensor, t: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """grad_x log p_phi(y | x_t) by autograd, for ``classifier(xt, t) -> logits`` (B, C)
    (chapter 9). xt (B, ...), t (B,), y (B,) long in 0..C-1; returns (B, ...) like xt.
    Works under ``torch.no_grad()`` (the samplers' mode): gradients are enabled inside."""
    with torch.enable_grad():
        x = xt.detach().requires_grad_(True)
        logits = classifier(x, t)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"the classifier must return logits (B, C), got {tuple(logits.shape)}")
        _check_labels(y, logits.shape[1], allow_null=False)
        logp = F.log_softmax(logits, dim=-1).gather(1, y.to(x.device)[:, None]).sum()
        return torch.autograd.grad(logp, x)[0].detach()


class ClassifierGuidedModel(nn.Module):
    """``(xt, t) -> eps(xt, t) - (1 + w) s_t grad log p_phi(y | xt)`` (chapter 9): an eps
    model steered by a noise-aware classifier. ``model``: eps-predicting ``model(xt, t)``;
    ``classifier(xt, t)`` -> logits; ``schedule``: the model's (original) schedule; y (B,)
    labels 0..C-1; w >= 0. Pass it to ``sample`` like any model (respacing wraps it)."""

    def __init__(self, model: nn.Module, classifier: nn.Module, schedule: Schedule,
                 y: torch.Tensor, w: float) -> None:
        super().__init__()
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a dmlib Schedule, got {type(schedule).__name__}")
        self.model, self.classifier, self.schedule, self.y, self.w = model, classifier, schedule, y, w

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if xt.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.y.shape[0]} labels for a batch of {xt.shape[0]}")
        eps = self.model(xt, t)
        g = class_log_prob_grad(self.classifier, xt, t, self.y)
        ab = self.schedule.alpha_bar.to(xt.device)[t]
        return classifier_guided_eps(eps, g.to(eps.dtype), ab, self.w)


def noisy_classifier_loss(classifier: nn.Module, schedule: Schedule, x0: torch.Tensor,
                          y: torch.Tensor, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """Cross-entropy of a noise-aware classifier (chapter 9): t ~ U{1..T}, eps ~ N(0, I),
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, loss = mean -log p_phi(y | x_t, t).
    Its minimiser is the exact p(y | x_t). x0 (B, ...), y (B,) long; returns a scalar."""
    B = x0.shape[0]
    gdev = generator.device if generator is not None else "cpu"
    t = torch.randint(1, schedule.T + 1, (B,), generator=generator, device=gdev).to(x0.device)
    eps = draw_noise(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
    return F.cross_entropy(classifier(q_sample(schedule, x0, t, eps), t), y)


def conditional_diffusion_loss(net: nn.Module, schedule, x0: torch.Tensor, y: torch.Tensor,
                               p_uncond: float, null_label: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """The CFG training loss (chapter 9): DDPM's loss on ``net(x_t, t, y')`` with y' = y, or the
    null label with probability ``p_uncond`` (``drop_labels``), so one network learns
    eps(x_t, y) and eps(x_t, null). ``schedule``: a Schedule or DiffusionSpec; x0 (B, ...),
    y (B,) long in 0..K-1; returns a scalar."""
    y_in = drop_labels(y, p_uncond, null_label, generator)
    return diffusion_loss(LabelledModel(net, y_in), schedule, x0, generator=generator)


__all__ = ["drop_labels", "LabelledModel", "GuidedModel", "guided", "classifier_guided_eps",
           "class_log_prob_grad", "ClassifierGuidedModel", "noisy_classifier_loss",
           "conditional_diffusion_loss"]
