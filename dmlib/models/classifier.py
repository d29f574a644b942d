"""A small MNIST classifier, the judge of chapter 7's sample quality.

    x (B, 1, 28, 28) in [-1, 1]
      -> [Conv3x3 -> BN -> ReLU] x 2 (32 ch) -> MaxPool -> [Conv3x3 -> BN -> ReLU] x 2 (64 ch)
      -> MaxPool -> Flatten -> Linear(3136, 128) -> ReLU   = features(x)  (the penultimate layer)
      -> Dropout -> Linear(128, 10)                        = logits

Its 128-d penultimate features play the role Inception features play in FID: the Fréchet
distance between the feature Gaussians of samples and of real test digits
(``dmlib.quality``). Trained by ``python -m dmlib.quality train-classifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    """channels: widths of the two conv stages; feature_dim: penultimate width;
    dropout: before the last layer."""

    channels: tuple[int, ...] = (32, 64)
    feature_dim: int = 128
    dropout: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        if len(self.channels) != 2 or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"ClassifierConfig.channels must be two positive ints, got {self.channels!r}")
        if not isinstance(self.feature_dim, int) or self.feature_dim < 1:
            raise ValueError(f"ClassifierConfig.feature_dim must be a positive int, got {self.feature_dim!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ClassifierConfig.dropout must be in [0, 1), got {self.dropout!r}")


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.MaxPool2d(2))


class MnistClassifier(nn.Module):
    """``model(x)``: x (B, 1, 28, 28) in [-1, 1] -> logits (B, 10); ``model.features(x)``:
    the penultimate activations (B, feature_dim). Chapter 7."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ClassifierConfig()
        self.body = nn.Sequential(_stage(1, c.channels[0]), _stage(c.channels[0], c.channels[1]),
                                  nn.Flatten(), nn.Linear(c.channels[1] * 49, c.feature_dim),
                                  nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, 10))

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"MnistClassifier expects images of shape (B, 1, 28, 28) in [-1, 1], "
                             f"got {got}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(x): (B, 1, 28, 28) -> (B, feature_dim)."""
        self._check(x)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
