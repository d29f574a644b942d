"""A small U-Net denoiser for 28x28 images such as MNIST (chapter 7).

The DDPM architecture at a smaller scale:

    x_t --conv--> [ResBlock x n (+Attn)] --down--> ... --> mid: ResBlock, Attn, ResBlock
                         |  skip connections (concatenated)  |
    out <--conv-- [ResBlock x (n+1) (+Attn)] <--up-- ... <---+

Each level halves the resolution (28 -> 14 -> 7 with channel_mults=(1, 2, 2)). A residual
block is

    h = Conv(SiLU(GN(x)));  h = GN(h) * (1 + s) + b  (scale-shift)  or  GN(h + e)  (additive),
    out = skip(x) + Conv(Dropout(SiLU(h))),

where (s, b) or e are a linear map of the time embedding e(t). Self-attention (at the
resolutions in ``attention_resolutions``) lets distant pixels talk: softmax(QK^T / sqrt(d)) V.
The output convolution starts at zero, so the untrained net predicts 0 (= E[eps]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import check_model_inputs, embed_labels, timestep_mlp


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of ``UNet``; ``UNet(config)`` rebuilds the model.

    in_channels: image channels (1 for MNIST); base_channels: width at full resolution;
    channel_mults: width multiplier per level (len = number of levels; inputs must be
    divisible by 2^(levels-1)); num_res_blocks: per level on the way down (n+1 up);
    attention_resolutions: resolutions (for an ``image_size`` input) that get self-attention;
    mid_attention: attention in the bottleneck; dropout: in residual blocks; groups:
    GroupNorm groups; time_dim: width of the time embedding (default 4 * base_channels);
    scale_shift: FiLM-style GN(h)(1+s)+b instead of adding e(t); num_heads: attention heads;
    num_classes: 0 for an unconditional model, else K class labels 0..K-1 plus the null
    label K ("no label", for classifier-free guidance; chapter 9), embedded and added to e(t).
    """

    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (7,)
    mid_attention: bool = True
    dropout: float = 0.0
    groups: int = 8
    time_dim: int | None = None
    scale_shift: bool = True
    num_heads: int = 4
    image_size: int = 28
    num_classes: int = 0

    def __post_init__(self) -> None:
        # frozen dataclass: normalise lists (e.g. from a checkpoint) into tuples.
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        for k in ("in_channels", "base_channels", "num_res_blocks", "groups", "num_heads",
                  "image_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"UNetConfig.{k} must be a positive int, got {v!r}")
        if not self.channel_mults or not all(isinstance(m, int) and m >= 1 for m in self.channel_mults):
            raise ValueError(f"UNetConfig.channel_mults must be a non-empty tuple of positive "
                             f"ints, got {self.channel_mults!r}")
        for m in (1, *self.channel_mults):
            ch = self.base_channels * m
            if ch % self.groups:
                raise ValueError(f"UNetConfig: {ch} channels (base_channels={self.base_channels} "
                                 f"x {m}) are not divisible by groups={self.groups}; pick "
                                 f"base_channels a multiple of groups")
            if (self.attention_resolutions or self.mid_attention) and ch % self.num_heads:
                raise ValueError(f"UNetConfig: {ch} channels are not divisible by "
                                 f"num_heads={self.num_heads}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(f"UNetConfig.image_size={self.image_size} must be divisible by "
                             f"2^(levels-1) = {factor}")
        levels = [self.image_size // 2 ** i for i in range(len(self.channel_mults))]
        bad = [r for r in self.attention_resolutions if r not in levels]
        if bad:
            raise ValueError(f"UNetConfig.attention_resolutions {bad} are not resolutions of this "
                             f"U-Net; for image_size={self.image_size} the levels are {levels}")
        if self.time_dim is not None and (self.time_dim < 2 or self.time_dim % 2):
            raise ValueError(f"UNetConfig.time_dim must be an even int >= 2 or None, got {self.time_dim!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
                or self.num_classes < 0:
            raise ValueError(f"UNetConfig.num_classes must be an int >= 0 (0: unconditional), "
                             f"got {self.num_classes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def temb_dim(self) -> int:
        """Width of the time embedding actually used."""
        return self.time_dim if self.time_dim is not None else 4 * self.base_channels

    @property
    def downsample_factor(self) -> int:
        """Input height and width must be divisible by this: 2^(levels-1)."""
        return 2 ** (len(self.channel_mults) - 1)


class ResBlock(nn.Module):
    """out = skip(x) + Conv(Dropout(SiLU(GN(Conv(SiLU(GN(x)))) modulated by e(t)))).

    x: (B, in_ch, H, W), temb: (B, temb_dim) -> (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, groups: int, dropout: float,
                 scale_shift: bool) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.time_proj(F.silu(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """x + Proj(softmax(Q K^T / sqrt(d)) V) over the H*W positions, with multi-head Q, K, V
    from a 1x1 conv of GN(x). x: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, ch: int, groups: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(out)


class UNet(nn.Module):
    """``model(xt, t)``: xt (B, C, H, W) float with H, W divisible by 2^(levels-1) (4 by
    default), t (B,) long in 1..T -> (B, C, H, W). Chapter 7.

    A class-conditional U-Net (``num_classes = K > 0``, chapter 9) is called as
    ``model(xt, t, y)`` with y (B,) long in 0..K, K being the null label; ``y=None`` means
    the null label for every example (the unconditional model of classifier-free guidance).
    The label embedding is added to the time embedding: e = e(t) + E[y]."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        config = UNetConfig() if config is None else config
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet expects a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        tdim = c.temb_dim
        self.time_mlp = timestep_mlp(c.base_channels, tdim)
        # K classes + the null label K; starts at 0 so that labels begin as "no information"
        self.label_emb = nn.Embedding(c.num_classes + 1, tdim) if c.num_classes else None
        if self.label_emb is not None:
            nn.init.zeros_(self.label_emb.weight)
        block = lambda i, o: ResBlock(i, o, tdim, c.groups, c.dropout, c.scale_shift)  # noqa: E731
        attn = lambda ch: SelfAttention(ch, c.groups, c.num_heads)  # noqa: E731

        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)
        n_levels = len(c.channel_mults)
        ch = c.base_channels
        skip_chs = [ch]
        self.down = nn.ModuleList()
        for lvl, mult in enumerate(c.channel_mults):
            res = c.image_size // 2 ** lvl
            out_ch = c.base_channels * mult
            for _ in range(c.num_res_blocks):
                layer = nn.ModuleList([block(ch, out_ch)])
                if res in c.attention_resolutions:
                    layer.append(attn(out_ch))
                self.down.append(layer)
                ch = out_ch
                skip_chs.append(ch)
            if lvl < n_levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_chs.append(ch)

        self.mid1 = block(ch, ch)
        self.mid_attn = attn(ch) if c.mid_attention else nn.Identity()
        self.mid2 = block(ch, ch)

        self.up = nn.ModuleList()
        for lvl, mult in reversed(list(enumerate(c.channel_mults))):
            res = c.image_size // 2 ** lvl
            out_ch = c.base_channels * mult
            for _ in range(c.num_res_blocks + 1):
                layer = nn.ModuleList([block(ch + skip_chs.pop(), out_ch)])
                if res in c.attention_resolutions:
                    layer.append(attn(out_ch))
                self.up.append(layer)
                ch = out_ch
            if lvl > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(ch, ch, 3, padding=1)]))
        assert not skip_chs

        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start by predicting 0 = E[eps]
        nn.init.zeros_(self.conv_out.bias)

    def _check(self, xt: torch.Tensor, t: torch.Tensor) -> None:
        check_model_inputs(xt, t, name="UNet")
        c = self.config
        if xt.dim() != 4:
            raise ValueError(f"UNet: xt must have shape (B, C, H, W), got {tuple(xt.shape)}; "
                             f"add a channel axis with xt.unsqueeze(1) or reshape flat images")
        if xt.shape[1] != c.in_channels:
            raise ValueError(f"UNet: xt has {xt.shape[1]} channels but the model was built with "
                             f"in_channels={c.in_channels}; set UNetConfig(in_channels=...)")
        f = c.downsample_factor
        if xt.shape[2] % f or xt.shape[3] % f:
            raise ValueError(f"UNet: height and width must be divisible by {f} (the net halves "
                             f"them {len(c.channel_mults) - 1} times), got {tuple(xt.shape[2:])}; "
                             f"pad the images (e.g. F.pad) to a multiple of {f}")

    def _label_embedding(self, y: torch.Tensor | None, xt: torch.Tensor) -> torch.Tensor | None:
        return embed_labels(self.label_emb, y, xt, self.config.num_classes, "UNet", "image")

    def forward(self, xt: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        self._check(xt, t)
        temb = self.time_mlp(t)
        lab = self._label_embedding(y, xt)
        if lab is not None:
            temb = temb + lab.to(temb.dtype)
        h = self.conv_in(xt)
        skips = [h]
        for layer in self.down:
            if isinstance(layer[0], ResBlock):
                h = layer[0](h, temb)
                for extra in layer[1:]:
                    h = extra(h)
            else:  # downsampling conv
                h = layer[0](h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for layer in self.up:
            if isinstance(layer[0], ResBlock):
                h = layer[0](torch.cat([h, skips.pop()], dim=1), temb)
                for extra in layer[1:]:
                    h = extra(h)
            else:  # upsample + conv
                h = layer[1](layer[0](h))
        return self.conv_out(F.silu(self.norm_out(h)))
