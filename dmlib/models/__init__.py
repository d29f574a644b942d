"""Denoising networks (chapters 6 and 7).

Calling convention, used everywhere in dmlib: ``model(xt, t)`` with ``xt`` a float
tensor (B, ...) and ``t`` a ``torch.long`` tensor of shape (B,) holding the lecture's
timesteps 1..T; the output has the shape of ``xt``. Every model has a ``config``
dataclass from which it is rebuilt: ``type(model)(model.config)``.

=========================  =====================================================  =======
name                       what it is                                             chapter
=========================  =====================================================  =======
``SinusoidalTimeEmbedding``  [sin(t w_i), cos(t w_i)], w_i = 10000^(-i/(dim/2))    6
``MLPDenoiser``            residual MLP for 2-D toy data (``MLPConfig``)           6
``UNet``                   small U-Net for 28x28 images (``UNetConfig``)           7
``MnistClassifier``        the MNIST judge of sample quality (``ClassifierConfig``) 7
``NoisyClassifier``        p(y | x_t, t) for 2-D data (``NoisyClassifierConfig``)  9
=========================  =====================================================  =======
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torch import nn

from .embedding import SinusoidalTimeEmbedding, check_model_inputs, timestep_mlp
from .mlp import MLPConfig, MLPDenoiser
from .unet import UNet, UNetConfig
from .classifier import ClassifierConfig, MnistClassifier
from .noisy_classifier import NoisyClassifier, NoisyClassifierConfig

#: Model classes that ``build_model`` (and ``dmlib.checkpoint.load_model``) can rebuild.
MODEL_CLASSES: dict[str, tuple[type[nn.Module], type]] = {
    "MLPDenoiser": (MLPDenoiser, MLPConfig),
    "UNet": (UNet, UNetConfig),
    "MnistClassifier": (MnistClassifier, ClassifierConfig),
    "NoisyClassifier": (NoisyClassifier, NoisyClassifierConfig),
}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters, sum_p numel(p) (only those with requires_grad by default)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_model(class_name: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a dmlib model from its class name and its config as a dict (as stored in a
    checkpoint): ``build_model("UNet", {...}) == UNet(UNetConfig(**config))``."""
    if class_name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {class_name!r}; dmlib can rebuild "
                         f"{sorted(MODEL_CLASSES)}. Build other models yourself and use "
                         f"dmlib.checkpoint.load_checkpoint(path, model)")
    cls, config_cls = MODEL_CLASSES[class_name]
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"config for {class_name} has unknown fields {unknown}; "
                         f"expected a subset of {sorted(names)}")
    return cls(config_cls(**config))


__all__ = ["SinusoidalTimeEmbedding", "timestep_mlp", "check_model_inputs", "MLPConfig",
           "MLPDenoiser", "UNetConfig", "UNet", "ClassifierConfig", "MnistClassifier", "NoisyClassifier",
           "NoisyClassifierConfig", "count_parameters", "build_model",
           "MODEL_CLASSES"]
