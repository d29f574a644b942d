"""How good are generated digits? Three numbers from a small MNIST classifier (chapter 7).

With phi(x) the classifier's penultimate features and p(y | x) its class probabilities:

* Fréchet distance (FD, the recipe of FID with an MNIST network instead of Inception):
  fit Gaussians N(mu_s, S_s) to phi(samples) and N(mu_r, S_r) to phi(test digits),

      FD = ||mu_s - mu_r||^2 + Tr(S_s + S_r - 2 (S_s^{1/2} S_r S_s^{1/2})^{1/2}),

  the squared 2-Wasserstein distance between the two Gaussians (0 for equal ones).
* confident share: the fraction of samples with max_y p(y | x) >= 0.9 (recognisable digits);
* class entropy: H of the histogram of argmax_y p(y | x), at most ln 10 = 2.303 nats when
  all ten digits are equally frequent (low when the model forgets some classes).

The floor: the same FD between real training digits and the test set is not 0 (finite
samples, a different split); a model cannot be expected to beat it.

Command line:
    python -m dmlib.quality train-classifier        # writes data/checkpoints/mnist_classifier.pt
    python -m dmlib.quality floor                   # real-data floor (train vs test)
    python -m dmlib.quality score CKPT --n 10000 --steps 100 --out metrics.json
    python -m dmlib.quality score CKPT --sampler ddpm --steps 50 --save samples.pt
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LN10 = math.log(10.0)


# -- the three numbers ------------------------------------------------------------------
def _check_feats(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be features of shape (N, D) with N >= 2, got {got}")
    return x.double()


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64. Chapter 7."""
    f = _check_feats(feats, "feats")
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def frechet_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor,
                       cov2: torch.Tensor) -> float:
    """FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}) (chapter 7).

    mu: (D,), cov: (D, D) symmetric PSD. Tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = Tr((S1 S2)^{1/2})
    is computed from symmetric eigendecompositions (stable, no complex sqrtm).
    """
    mu1, mu2, cov1, cov2 = (torch.as_tensor(v, dtype=torch.float64) for v in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (*mu1.shape, *mu1.shape):
        raise ValueError(f"shapes do not fit: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; cov "
                         f"{tuple(cov1.shape)}, {tuple(cov2.shape)} (want (D,) and (D, D))")
    w, v = torch.linalg.eigh((cov1 + cov1.T) / 2)
    s1 = (v * w.clamp(min=0).sqrt()) @ v.T  # S1^{1/2}
    m = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return float(fd.clamp(min=0))


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """FD between the Gaussians fitted to two feature sets (N_a, D) and (N_b, D). Chapter 7."""
    return frechet_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def confident_share(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of rows of ``probs`` (N, K) whose largest probability is >= threshold."""
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (N, K), got {tuple(probs.shape)}")
    return float((probs.max(1).values >= threshold).double().mean())


def class_entropy(probs: torch.Tensor) -> float:
    """Entropy (nats) of the histogram of predicted classes argmax_y p(y | x):
    H = -sum_k h_k ln h_k with h_k the share of samples predicted as k; ln K at most."""
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (N, K), got {tuple(probs.shape)}")
    h = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / probs.shape[0]
    h = h[h > 0]
    return float(-(h * h.log()).sum())


# -- the classifier -------------------------------------------------------------------------
@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor,
             batch_size: int = 1000, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Features phi(x) (N, D) and probabilities p(y | x) (N, 10) of images (N, 1, 28, 28)
    in [-1, 1], in batches, in eval mode (float64, CPU). ``progress=True`` shows a tqdm bar
    over the batches."""
    from tqdm.auto import tqdm

    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"images must have shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError("images must lie in [-1, 1] (the model range); clamp samples first")
    classifier.eval()
    dev = next(classifier.parameters()).device
    feats, probs = [], []
    for i in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc="classify"):
        f = classifier.features(images[i:i + batch_size].to(dev))
        feats.append(f.double().cpu())
        probs.append(F.softmax(classifier.head(f), dim=1).double().cpu())
    return torch.cat(feats), torch.cat(probs)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image (B, 1, H, W) in [-1, 1] by a random whole number of pixels in
    -max_shift..max_shift along each axis, filling with background (-1): the augmentation
    that takes a small CNN past 99% on MNIST."""
    B, _, H, W = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator)
    padded = F.pad(x + 1, (max_shift,) * 4)  # background 0 after the +1
    rows = (torch.arange(H)[None, :] + max_shift - shifts[:, :1]).to(x.device)  # (B, H)
    cols = (torch.arange(W)[None, :] + max_shift - shifts[:, 1:]).to(x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    out = padded[b, 0, rows[:, :, None], cols[:, None, :]]  # (B, H, W)
    return out.unsqueeze(1) - 1


def train_classifier(epochs: int = 5, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     limit: int | None = None, progress: bool = True) -> tuple[nn.Module, float]:
    """Train ``MnistClassifier`` on the MNIST training set (cross-entropy on randomly shifted
    digits, AdamW with a cosine learning-rate decay, EMA with decay 0.999,
    ``dmlib.training.train``); returns (EMA model in eval mode, test accuracy)."""
    from .data.mnist import load_mnist
    from .models.classifier import MnistClassifier
    from .training import TrainConfig, train

    torch.manual_seed(seed)
    x, y = load_mnist("train", limit=limit)
    model = MnistClassifier()
    steps = epochs * (x.shape[0] // batch_size)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=1e-4,
                      warmup_steps=100, ema_decay=0.999, seed=seed, device="cpu",
                      lr_decay="cosine")
    res = train(model, lambda m, b, g: F.cross_entropy(m(random_shift(b[0], g)), b[1]), (x, y),
                cfg, progress=progress)
    return res.ema_model, test_accuracy(res.ema_model)


@torch.no_grad()
def test_accuracy(classifier: nn.Module) -> float:
    """Accuracy on the 10,000 MNIST test digits."""
    from .data.mnist import load_mnist

    x, y = load_mnist("test")
    _, probs = classify(classifier, x)
    return float((probs.argmax(1) == y).double().mean())


# -- reports --------------------------------------------------------------------------------
@dataclass
class QualityReport:
    """The three numbers for ``n`` images (and the predicted-class histogram)."""

    n: int
    fd: float
    confident: float
    entropy: float
    histogram: list[int]

    @property
    def entropy_ratio(self) -> float:
        """entropy / ln 10 (1 = all digits equally frequent)."""
        return self.entropy / LN10

    def __str__(self) -> str:
        return (f"n={self.n}: FD {self.fd:.2f}, confident {100 * self.confident:.1f}%, "
                f"class entropy {self.entropy:.3f} nats ({self.entropy_ratio:.3f} ln 10)")


_REF: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def reference_stats(classifier: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_r, S_r) of the classifier's features on the 10,000 test digits (cached)."""
    key = id(classifier)
    if key not in _REF:
        from .data.mnist import load_mnist

        x, _ = load_mnist("test")
        _REF.clear()
        _REF[key] = gaussian_stats(classify(classifier, x)[0])
    return _REF[key]


def score_images(images: torch.Tensor, classifier: nn.Module | None = None) -> QualityReport:
    """FD to the test set, confident share and class entropy of images (N, 1, 28, 28) in
    [-1, 1]. ``classifier`` defaults to the shipped one. Chapter 7."""
    if classifier is None:
        from .pretrained import load_pretrained

        classifier = load_pretrained("mnist_classifier")
    feats, probs = classify(classifier, images)
    fd = frechet_from_stats(*gaussian_stats(feats), *reference_stats(classifier))
    hist = torch.bincount(probs.argmax(1), minlength=10).tolist()
    return QualityReport(n=images.shape[0], fd=fd, confident=confident_share(probs),
                         entropy=class_entropy(probs), histogram=hist)


def real_data_floor(classifier: nn.Module | None = None, n: int = 10000) -> QualityReport:
    """``score_images`` of the first ``n`` real training digits: the floor. Chapter 7."""
    from .data.mnist import load_mnist

    x, _ = load_mnist("train", limit=n)
    return score_images(x, classifier)


# -- command line ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dmlib.quality")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tc = sub.add_parser("train-classifier", help="train and export the judge")
    tc.add_argument("--out", default="data/checkpoints/mnist_classifier.pt")
    tc.add_argument("--epochs", type=int, default=5)
    tc.add_argument("--threads", type=int)
    fl = sub.add_parser("floor", help="the real-data floor: training digits vs test set")
    fl.add_argument("--n", type=int, default=10000)
    fl.add_argument("--out")
    sc = sub.add_parser("score", help="sample from a diffusion checkpoint and score")
    sc.add_argument("checkpoint")
    sc.add_argument("--n", type=int, default=10000)
    sc.add_argument("--steps", type=int, default=100, help="respaced sampling steps")
    sc.add_argument("--sampler", default="ddpm", help="a name in dmlib.sampling.SAMPLERS")
    sc.add_argument("--variance", choices=["beta", "beta_tilde"],
                    help="sigma_t^2 (default: the checkpoint's DiffusionSpec)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--threads", type=int)
    sc.add_argument("--out", help="write the report as JSON here")
    sc.add_argument("--save", help="also save the samples (uint8 tensor) here, e.g. to "
                    "score several runs in parallel and merge them with score-samples")
    ss = sub.add_parser("score-samples", help="score saved samples (files from score --save)")
    ss.add_argument("files", nargs="+")
    ss.add_argument("--out")
    return ap


def _train_classifier_cli(args: argparse.Namespace) -> None:
    from .train import export_weights

    t0 = time.perf_counter()
    model, acc = train_classifier(epochs=args.epochs)
    secs = time.perf_counter() - t0
    digest = export_weights(model, args.out, step=0,
                            extra={"test_accuracy": acc, "epochs": args.epochs,
                                   "train_seconds": secs})
    print(f"test accuracy {100 * acc:.2f}% after {secs:.0f} s; wrote {args.out} "
          f"(sha256 {digest})")


def _score_cli(args: argparse.Namespace) -> tuple[QualityReport, dict]:
    """Sample a checkpoint with its spec, score, optionally save the samples."""
    from .checkpoint import load_diffusion_model
    from .sampling import sample_images

    model, spec = load_diffusion_model(args.checkpoint)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    x = sample_images(model, spec, args.n, steps=args.steps, sampler=args.sampler,
                      variance=args.variance, generator=g, progress=True)
    secs = time.perf_counter() - t0
    rep = score_images(x)
    print(f"{args.n} samples, {args.sampler}, {args.steps} steps, {secs:.0f} s:", rep)
    if args.save:  # as 8-bit pixels, like the data: (x + 1) * 127.5 rounded
        torch.save(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), args.save)
    return rep, dict(steps=args.steps, sampler=args.sampler, spec=spec.to_dict(),
                     variance=args.variance or spec.variance, seed=args.seed,
                     sampling_seconds=secs, checkpoint=args.checkpoint,
                     threads=torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.cmd == "train-classifier":
        _train_classifier_cli(args)
        return 0
    info: dict = {}
    if args.cmd == "floor":
        rep = real_data_floor(n=args.n)
        print("real training digits:", rep)
    elif args.cmd == "score-samples":
        x = torch.cat([torch.load(f, weights_only=True) for f in args.files])
        rep = score_images(x.float().div(127.5).sub(1.0))
        print(f"{len(args.files)} files:", rep)
    else:
        rep, info = _score_cli(args)
    if args.out:
        out = {**asdict(rep), "entropy_ratio": rep.entropy_ratio, **info}
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
