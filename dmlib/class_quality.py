"""Scores for class-conditional samples (chapter 9), on top of ``dmlib.quality``.

For images generated with requested labels y_i and the shipped classifier's features
phi(x) and probabilities p(c | x):

* accuracy (share of the requested class): mean_i [argmax_c p(c | x_i) = y_i];
* confusion matrix M[y, c] = number of samples requested as y and classified as c;
* within-class diversity: for each class, the mean pairwise Euclidean distance of the
  features of the samples requested as that class,

      div_y = mean_{i != j, y_i = y_j = y} ||phi(x_i) - phi(x_j)||,

  averaged over classes; compare it with the same number for real digits of each class
  (guidance that collapses a class to a few prototypes lowers it).
"""

from __future__ import annotations

import torch
from torch import nn

from .quality import classify, frechet_from_stats, gaussian_stats, reference_stats


def confusion_matrix(requested: torch.Tensor, predicted: torch.Tensor, num_classes: int = 10
                     ) -> torch.Tensor:
    """M[y, c] = #{i: requested_i = y, predicted_i = c}, shape (C, C) long. Chapter 9."""
    if requested.shape != predicted.shape or requested.dim() != 1:
        raise ValueError(f"requested and predicted must be 1-D of the same length, got "
                         f"{tuple(requested.shape)} and {tuple(predicted.shape)}")
    idx = requested.long() * num_classes + predicted.long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def class_diversity(feats: torch.Tensor, labels: torch.Tensor, num_classes: int = 10
                    ) -> torch.Tensor:
    """Mean pairwise distance of the features within each class, shape (C,) float64 (NaN
    for a class with fewer than 2 examples). feats (N, D), labels (N,). Chapter 9."""
    if feats.dim() != 2 or labels.shape != (feats.shape[0],):
        raise ValueError(f"feats must be (N, D) and labels (N,), got {tuple(feats.shape)} and "
                         f"{tuple(labels.shape)}")
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        f = feats[labels == c].double()
        n = f.shape[0]
        if n >= 2:
            out[c] = torch.cdist(f, f).sum() / (n * (n - 1))
    return out


def score_conditional(images: torch.Tensor, requested: torch.Tensor, classifier: nn.Module,
                      ref_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Accuracy, FD to the test set, confident share, within-class diversity (mean over
    classes) and the confusion matrix of images (N, 1, 28, 28) in [-1, 1] generated for the
    labels ``requested`` (N,). ``ref_stats``: (mu, S) of the reference features (default:
    all 10,000 test digits, ``reference_stats``). Returns a dict of floats (and the matrix
    as nested lists). Chapter 9."""
    feats, probs = classify(classifier, images)
    pred = probs.argmax(1)
    ref = reference_stats(classifier) if ref_stats is None else ref_stats
    fd = frechet_from_stats(*gaussian_stats(feats), *ref)
    div = class_diversity(feats, requested.cpu())
    return {"n": int(images.shape[0]), "accuracy": float((pred == requested.cpu()).double().mean()),
            "fd": float(fd), "confident": float((probs.max(1).values >= 0.9).double().mean()),
            "diversity": float(div.nanmean()),
            "confusion": confusion_matrix(requested.cpu(), pred).tolist()}


def real_class_diversity(classifier: nn.Module, per_class: int = 100) -> float:
    """``class_diversity`` of real test digits, ``per_class`` of each class (the first ones),
    averaged over classes: the reference for generated samples. Chapter 9."""
    from .data.mnist import load_mnist

    x, y = load_mnist("test")
    keep = torch.cat([(y == c).nonzero()[:per_class, 0] for c in range(10)])
    feats, _ = classify(classifier, x[keep])
    return float(class_diversity(feats, y[keep]).nanmean())


__all__ = ["confusion_matrix", "class_diversity", "score_conditional", "real_class_diversity"]
