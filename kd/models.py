"""The networks: an EDSR-style teacher, a tiny real-time student, and the seed project's student.

All three map a degraded RGB frame in [0, 1] to its restoration at the same size, predicting a
residual on top of the input (global skip).  Teacher and student work at reduced resolution after a
pixel-unshuffle: the degraded frame was sent at 1/s of its size, so little is lost, every 3×3 conv
sees a wider area, and the cost per output pixel drops by the square of the factor.

A model's constructor arguments are its config; checkpoints store ``{"arch": ..., **config}`` so
``build(config)`` recreates the network without guessing.
"""
from __future__ import annotations

import inspect

import cv2
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from kd.degrade import STREAM_FEATURES


def core(residual: torch.Tensor, levels: float | torch.Tensor) -> torch.Tensor:
    """Soft-threshold a predicted correction by ``levels`` (in 1/255 steps): "coring", as video enhancers do.

    Changes smaller than the threshold are dropped and larger ones shrunk by it, so a frame with nothing to repair
    stays as it was (measured: +2 dB PSNR to the input on clean frames for −0.03 dB on `medium` at 1 level).
    """
    if not torch.is_tensor(levels) and not levels:
        return residual
    t = levels / 255
    return residual - residual.clamp(-t, t)


def coring_levels(config: dict, stream: torch.Tensor | None):
    """The coring each frame gets: ``told_coring`` for frames told their stream, ``coring`` for the rest.

    Why two: a blind net must guess whether a frame was damaged, so it needs a threshold to leave clean frames alone;
    told "clean", a net already leaves them (measured on validation: > 58 dB from the input uncored), and the
    threshold then only shrinks the repair of damaged streams. ``told_coring`` absent: one threshold for both.
    """
    blind, told = config["coring"], config.get("told_coring")
    if stream is None or told is None or told == blind:
        return blind
    is_told = stream.abs().sum(1) > 0  # stream_condition(None) is all zeros: not told
    return torch.where(is_told, torch.tensor(float(told)), torch.tensor(float(blind))).to(stream)[:, None, None, None]


class StreamFiLM(nn.Module):
    """Tells a net its stream: per-channel scale and shift (FiLM) of chosen conv outputs, computed from
    ``kd.degrade.stream_condition`` (scale, codec strength; zeros = not told) by a small MLP.

    Why: a blind net has to guess the damage from the pixels and trades light damage for heavy (fine-tuned on
    `mild` alone, the CPU teacher gained +0.43 dB there over the same steps on the mixed distribution). A receiver
    knows its stream's size and quantiser. The last layer starts at zero, so a stream-aware net starts as the blind
    net it is initialised from; for one stream the modulation folds into the convs (``fold_film``): free to run.
    """

    def __init__(self, widths: list[int], hidden: int = 32):
        super().__init__()
        self.widths = list(widths)
        self.mlp = nn.Sequential(nn.Linear(STREAM_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 2 * sum(widths)))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, stream: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(scale, shift) per modulated conv, each N×C×1×1, for a batch of N stream conditions."""
        out = self.mlp(stream).split([w for w in self.widths for _ in (0, 1)], dim=1)
        return [(1 + out[2 * i][..., None, None], out[2 * i + 1][..., None, None]) for i in range(len(self.widths))]


class StreamExperts(nn.Module):
    """Per-stream conv weights: each of the given convs gets ``k`` extra kernels, mixed by coefficients that an MLP
    computes from the stream (CondConv, routed by what the receiver knows instead of by the pixels).

    Why: FiLM lets the stream rescale a conv's output channels; experts let it change the filters themselves, so one
    small net can hold different restorations for light and heavy damage. For one stream the mix folds into the conv
    (``fold``): the net that runs is the plain one, same size and cost. The router's last layer starts at zero, so a
    net initialised from one without experts starts as that net; the kernels start small and random (not zero), so
    the router gets a gradient from the first step.
    """

    def __init__(self, convs: list[nn.Conv2d], k: int, hidden: int = 32):
        super().__init__()
        self.k = k
        self.kernels = nn.ModuleList(nn.Conv2d(c.in_channels, c.out_channels * k, c.kernel_size, padding=c.padding)
                                     for c in convs)
        for conv in self.kernels:
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)
        self.router = nn.Sequential(nn.Linear(STREAM_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, k * len(convs)))
        nn.init.zeros_(self.router[-1].weight)
        nn.init.zeros_(self.router[-1].bias)

    def forward(self, stream: torch.Tensor) -> list[torch.Tensor]:
        """Mixing coefficients per conv, each N×k, for a batch of N stream conditions."""
        return list(self.router(stream).split(self.k, dim=1))

    def delta(self, i: int, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """What conv ``i``'s experts add to its output for input ``x`` (each frame mixed by its own stream)."""
        y = self.kernels[i](x)
        return (y.unflatten(1, (self.k, -1)) * coef[:, :, None, None, None]).sum(1)

    def mixed(self, i: int, conv: nn.Conv2d, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """``conv(x) + delta(i, x, coef)`` computed as one grouped conv: each frame's kernels are mixed first.

        Why: ``delta`` runs all k experts on every pixel (k + 1 convs' work); mixing the weights per frame costs one
        conv whatever k is (about 3× faster training at k = 4 on a CPU, and more experts cost nothing).
        """
        n = x.shape[0]
        weight, bias = self.mixed_kernels(i, conv, coef)
        y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.flatten(0, 1), bias.flatten(), padding=conv.padding,
                     groups=n)
        return y.view(n, -1, *y.shape[2:])

    def mixed_kernels(self, i: int, conv: nn.Conv2d, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv ``i``'s weight and bias with its experts mixed in, one per row of ``coef`` (N×k): N×out×in×kh×kw, N×out."""
        kernels = self.kernels[i]
        c = coef[:, :, None]
        weight = conv.weight + (kernels.weight.unflatten(0, (self.k, -1))[None] * c[..., None, None, None]).sum(1)
        bias = conv.bias + (kernels.bias.unflatten(0, (self.k, -1))[None] * c).sum(1)
        return weight, bias

    @torch.no_grad()
    def grown_from(self, state: dict, prefix: str = "experts.") -> dict:
        """``state`` (a net with fewer experts, or experts on fewer convs) made to fit this one: the old experts keep
        their slots, the new ones keep this module's fresh kernels and get router rows of zeros, so the grown net
        starts as the old one. New convs come after the old ones (``Student.expert_convs``' order)."""
        router = f"{prefix}router.{len(self.router) - 1}."
        if router + "weight" not in state:
            return state
        convs = len(self.kernels)
        old_convs = sum(k.startswith(prefix + "kernels.") and k.endswith(".weight") for k in state)
        old_k = state[router + "weight"].shape[0] // old_convs
        if old_k > self.k or old_convs > convs or (old_k, old_convs) == (self.k, convs):
            return state  # nothing to grow, or more than this net holds: left to load_state_dict to accept or refuse
        grown = dict(state)
        for key, fresh in self.state_dict().items():
            key, fresh = prefix + key, fresh.clone()
            if key.startswith(prefix + "kernels.") and key in state:
                fresh.unflatten(0, (self.k, -1))[:old_k] = state[key].unflatten(0, (old_k, -1))
            elif key.startswith(router):
                fresh.zero_().unflatten(0, (convs, self.k))[:old_convs, :old_k] = \
                    state[key].unflatten(0, (old_convs, old_k))
            elif not key.startswith(prefix + "kernels."):
                continue
            grown[key] = fresh
        return grown

    @torch.no_grad()
    def fold(self, i: int, conv: nn.Conv2d, coef: torch.Tensor) -> nn.Conv2d:
        """The plain conv equal to ``conv(x) + delta(i, x, coef)`` for one stream (``coef`` 1×k)."""
        weight, bias = self.mixed_kernels(i, conv, coef.reshape(1, self.k))
        out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
        out.weight.copy_(weight[0])
        out.bias.copy_(bias[0])
        return out


STREAM_MODULES = ("film.", "experts.")  # state-dict prefixes of what tells a net its stream (folded away to run)
GROWN_MODULES = STREAM_MODULES + ("context.",)  # parts that start as the identity: a net may be grown from one without


def modulate(y: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    return y if film is None else y * film[0] + film[1]


@torch.no_grad()
def fold_film(conv: nn.Conv2d, film: tuple[torch.Tensor, torch.Tensor]) -> nn.Conv2d:
    """The conv whose output is ``modulate(conv(x), film)`` for one stream (a batch of 1)."""
    scale, shift = film[0].flatten(), film[1].flatten()
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    out.weight.copy_(conv.weight * scale[:, None, None, None])
    out.bias.copy_(conv.bias * scale + shift)
    return out


@torch.no_grad()
def without_film(net: nn.Module, stream) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A blind copy of a stream-aware ``net`` (same weights, no FiLM or experts, the coring ``stream`` gets) and the
    modulations its FiLM gives ``stream``, for the caller to fold into the copy's convs."""
    s = stream_batch(stream, torch.zeros(1, 1))
    config = {k: v for k, v in net.config.items() if k not in ("experts", "told_coring", "expert_scope")}
    plain = type(net)(**config | {"stream": False, "coring": float(coring_levels(net.config, s))})
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(STREAM_MODULES)})
    return plain, net.film(s)


def stream_aware(model: nn.Module) -> bool:
    """Whether the net is told its stream (it has a ``StreamFiLM``)."""
    return getattr(model, "film", None) is not None


def told_config(stream: bool, told_coring: float | None) -> dict:
    """The ``told_coring`` config entry: only a net told its stream has one, and only when it is set."""
    if told_coring is not None and not stream:
        raise ValueError("told_coring is the coring of frames told their stream: it needs stream=True")
    return {} if told_coring is None else {"told_coring": float(told_coring)}


STREAM_INPUTS = ("film.mlp.0.weight", "experts.router.0.weight")  # the layers that read the stream vector


def widen_stream_inputs(state: dict) -> dict:
    """A state dict of a net told an older, shorter stream vector (``kd.degrade.STREAM_VERSION``), made to take the
    current one: the new features get zero weights, so the net restores every old stream exactly as before and
    ignores what it was never taught (until training teaches it)."""
    state = dict(state)
    for key in STREAM_INPUTS:
        w = state.get(key)
        if w is not None and w.shape[1] < STREAM_FEATURES:
            state[key] = torch.cat([w, w.new_zeros(w.shape[0], STREAM_FEATURES - w.shape[1])], dim=1)
    return state


def stream_batch(stream, x: torch.Tensor) -> torch.Tensor:
    """A stream condition (None, one vector, or one per frame) as an N×STREAM_FEATURES tensor on ``x``'s device."""
    if stream is None:
        return x.new_zeros(x.shape[0], STREAM_FEATURES)
    stream = torch.as_tensor(stream, dtype=x.dtype, device=x.device)
    return stream.expand(x.shape[0], STREAM_FEATURES) if stream.ndim == 1 else stream


class ResBlock(nn.Module):
    """EDSR residual block: conv-ReLU-conv, scaled, added back. No batch norm (it hurts restoration)."""

    def __init__(self, width: int, res_scale: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x, film=None):
        return x + self.res_scale * self.conv2(F.relu(modulate(self.conv1(x), film)))


class Teacher(nn.Module):
    """EDSR-like: unshuffle, head conv, ``blocks`` residual blocks with a body skip, tail conv, shuffle, global skip.

    ``stream=True``: told the stream (``StreamFiLM`` on the head and each block's first conv)."""

    def __init__(self, blocks: int = 12, width: int = 96, unshuffle: int = 4, res_scale: float = 0.1,
                 coring: float = 0.0, stream: bool = False, told_coring: float | None = None):
        super().__init__()
        self.config = dict(blocks=blocks, width=width, unshuffle=unshuffle, res_scale=res_scale, coring=coring,
                           stream=stream) | told_config(stream, told_coring)
        c = 3 * unshuffle**2
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(unshuffle), nn.PixelShuffle(unshuffle)
        self.head = nn.Conv2d(c, width, 3, padding=1)
        self.body = nn.ModuleList(ResBlock(width, res_scale) for _ in range(blocks))
        self.body_tail = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the identity: the input is already a fair guess
        nn.init.zeros_(self.tail.bias)
        self.film = StreamFiLM([width] * (1 + blocks)) if stream else None

    @property
    def multiple(self) -> int:
        return self.config["unshuffle"]

    def forward(self, x, return_features: bool = False, stream=None):
        s = stream_batch(stream, x) if self.film is not None else None
        films = self.film(s) if s is not None else [None] * (1 + len(self.body))
        h = modulate(self.head(self.unshuffle(x - 0.5)), films[0])
        feats, y = [], h
        for i, block in enumerate(self.body):
            y = block(y, films[1 + i])
            if i in self.feature_points():
                feats.append(y)
        y = self.body_tail(y) + h
        out = x + core(self.shuffle(self.tail(y)), coring_levels(self.config, s))
        return (out, feats) if return_features else out

    def feature_points(self) -> tuple[int, ...]:
        """Blocks whose outputs the student is taught to mimic: the middle and the end of the body."""
        n = len(self.body)
        return (n // 2 - 1, n - 1)

    @torch.no_grad()
    def for_stream(self, stream) -> "Teacher":
        """The plain (blind-architecture) teacher that restores frames of this stream as this one does when told it."""
        if self.film is None:
            return self
        plain, films = without_film(self, stream)
        plain.head = fold_film(self.head, films[0])
        for block, film in zip(plain.body, films[1:]):
            block.conv1 = fold_film(block.conv1, film)
        return plain.eval()


class RepConv(nn.Module):
    """A 3×3 conv trained with parallel 1×1 and identity branches (RepVGG), folded into one plain 3×3 conv to run.

    The extra branches make optimisation easier for a tiny net; after ``folded()`` the cost is a single conv.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv1 = nn.Conv2d(cin, cout, 1)
        self.identity = cin == cout

    def forward(self, x):
        y = self.conv3(x) + self.conv1(x)
        return y + x if self.identity else y

    @torch.no_grad()
    def folded(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.conv3.in_channels, self.conv3.out_channels, 3, padding=1)
        w = self.conv3.weight.clone()
        w[:, :, 1, 1] += self.conv1.weight[:, :, 0, 0]
        if self.identity:
            idx = torch.arange(w.shape[0])
            w[idx, idx, 1, 1] += 1
        conv.weight.copy_(w)
        conv.bias.copy_(self.conv3.bias + self.conv1.bias)
        return conv


class Context(nn.Module):
    """A wide, cheap view for a small net: its features average-pooled by ``pool``, two 3×3 convs there, a 1×1 back
    to the trunk's width, upsampled (bilinear) and added to the trunk.

    Why: the ×2-grid student sees ±13 px, less than a 16 px block of a ÷2 JPEG and far less than the teacher
    (±70 px). At pool 8 on that grid the branch runs on 1/256 of the pixels (0.1 GFLOP per 720p frame) and sees about
    ±80 px. Its last conv starts at zero, so a student grown from one without it starts as that student.
    """

    def __init__(self, width: int, hidden: int, pool: int):
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(width, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2, self.out]

    def forward(self, y: torch.Tensor, run=lambda j, conv, h: conv(h)) -> torch.Tensor:
        """``run(j, conv, h)`` applies the branch's ``j``-th conv (the student passes one that adds its experts)."""
        z = F.leaky_relu(run(0, self.conv1, F.avg_pool2d(y, self.pool)), 0.1)  # y's sides: multiples of pool
        z = run(2, self.out, F.leaky_relu(run(1, self.conv2, z), 0.1))
        return y + F.interpolate(z, scale_factor=self.pool, mode="bilinear", align_corners=False)


class Student(nn.Module):
    """Real-time net: unshuffle, a few 3×3 convs (LeakyReLU) at 1/unshuffle² of the pixels, a 1×1 tail, shuffle, skip.

    ``coring`` (levels) soft-thresholds the correction at inference, set when shipping (see ``core``).

    ``rep=True`` trains each 3×3 conv as a ``RepConv``; ``fold()`` turns it into the plain net with the same outputs.
    ``stream=True``: told the stream (``StreamFiLM`` on every 3×3 conv); ``for_stream`` folds it away.
    ``experts=k`` (k > 1, told the stream): the convs the FiLM modulates (head and body) also get ``StreamExperts``
    kernels, folded away likewise.
    ``context=c`` (> 0): a ``Context`` branch of ``c`` channels at 1/``context_pool`` of the grid, added after the
    middle body conv; sides must then be multiples of unshuffle × context_pool.
    ``expert_scope="all"``: experts also on the tail and the context branch's convs (which the FiLM leaves shared by
    every stream); they fold away the same way, so the net that runs keeps its size and cost.
    """

    def __init__(self, width: int = 32, convs: int = 3, unshuffle: int = 4, tail_kernel: int = 1, rep: bool = False,
                 coring: float = 0.0, stream: bool = False, experts: int = 1, told_coring: float | None = None,
                 context: int = 0, context_pool: int = 8, expert_scope: str = "trunk"):
        super().__init__()
        if experts > 1 and not stream:
            raise ValueError("experts are chosen by the stream: experts > 1 needs stream=True")
        if expert_scope not in ("trunk", "all") or (expert_scope == "all" and experts < 2):
            raise ValueError(f"expert_scope is 'trunk' or 'all' (the latter with experts > 1), got {expert_scope!r}")
        self.config = dict(width=width, convs=convs, unshuffle=unshuffle, tail_kernel=tail_kernel, rep=rep,
                           coring=coring, stream=stream) | ({"experts": experts} if experts > 1 else {}) \
            | told_config(stream, told_coring) | ({"context": context, "context_pool": context_pool} if context else {}) \
            | ({"expert_scope": expert_scope} if expert_scope != "trunk" else {})
        c = 3 * unshuffle**2
        conv3 = RepConv if rep else (lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1))
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(unshuffle), nn.PixelShuffle(unshuffle)
        self.head = conv3(c, width)
        self.body = nn.ModuleList(conv3(width, width) for _ in range(convs))
        self.tail = nn.Conv2d(width, c, tail_kernel, padding=tail_kernel // 2)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.film = StreamFiLM([width] * (1 + convs)) if stream else None
        self.context = Context(width, context, context_pool) if context else None
        self.experts = StreamExperts(self.expert_convs(), experts) if experts > 1 else None

    @staticmethod
    def _conv(layer) -> nn.Conv2d:
        return layer.conv3 if isinstance(layer, RepConv) else layer

    def expert_convs(self) -> list[nn.Conv2d]:
        """The convs that get experts, in the experts' order: head and body; with ``expert_scope="all"`` then the
        tail and the context branch's convs (after the trunk's, so a net grown from a trunk-only one keeps its slots)."""
        convs = [self._conv(self.head), *map(self._conv, self.body)]
        if self.config.get("expert_scope") == "all":
            convs += [self.tail, *(self.context.convs() if self.context is not None else [])]
        return convs

    @property
    def multiple(self) -> int:
        return self.config["unshuffle"] * self.config.get("context_pool", 1)

    def forward(self, x, return_features: bool = False, stream=None):
        s = stream_batch(stream, x) if self.film is not None else None
        films = self.film(s) if s is not None else [None] * (1 + len(self.body))
        coefs = self.experts(s) if self.experts is not None else None
        middle = self.feature_points()[0]  # where a context branch joins the trunk
        n = 1 + len(self.body)  # experts beyond the trunk's (expert_scope "all"): the tail's, then the context's
        beyond = coefs is not None and len(coefs) > n

        def conv(i, layer, h):
            if coefs is None:
                return layer(h)
            if isinstance(layer, nn.Conv2d):
                return self.experts.mixed(i, layer, h, coefs[i])
            return layer(h) + self.experts.delta(i, h, coefs[i])  # a RepConv's branches: the experts add to them

        def beyond_trunk(i, layer, h):  # the tail (i = n) and the context convs: with experts only in scope "all"
            return conv(i, layer, h) if beyond else layer(h)

        # leaky: in a plain conv chain a dead ReLU layer cuts every path to the output (seen at lr 2e-3)
        y = F.leaky_relu(modulate(conv(0, self.head, self.unshuffle(x - 0.5)), films[0]), 0.1)
        feats = []
        for i, layer in enumerate(self.body):
            y = F.leaky_relu(modulate(conv(1 + i, layer, y), films[1 + i]), 0.1)
            if self.context is not None and i == middle:
                y = self.context(y, lambda j, c, h: beyond_trunk(n + 1 + j, c, h))
            if i in self.feature_points():
                feats.append(y)
        out = x + core(self.shuffle(beyond_trunk(n, self.tail, y)), coring_levels(self.config, s))
        return (out, feats) if return_features else out

    def feature_points(self) -> tuple[int, ...]:
        n = len(self.body)
        return (max(0, n // 2 - 1), n - 1)

    def fold(self) -> "Student":
        """The plain (inference) student computing the same function; itself if it is plain already."""
        if not self.config["rep"]:
            return self
        plain = Student(**(self.config | {"rep": False}))
        plain.head = self.head.folded()
        plain.body = nn.ModuleList(c.folded() for c in self.body)
        plain.tail.load_state_dict(self.tail.state_dict())
        if self.film is not None:
            plain.film.load_state_dict(self.film.state_dict())
        if self.experts is not None:
            plain.experts.load_state_dict(self.experts.state_dict())
        if self.context is not None:
            plain.context.load_state_dict(self.context.state_dict())
        return plain.eval()

    @torch.no_grad()
    def for_stream(self, stream) -> "Student":
        """The plain blind-architecture student that restores this stream's frames as this one does when told it."""
        net = self.fold()
        if net.film is None:
            return net
        plain, films = without_film(net, stream)
        convs = net.expert_convs()
        if net.experts is not None:
            coefs = net.experts(stream_batch(stream, torch.zeros(1, 1)))
            convs = [net.experts.fold(i, c, coef) for i, (c, coef) in enumerate(zip(convs, coefs))]
        n = 1 + len(net.body)
        plain.head = fold_film(convs[0], films[0])
        plain.body = nn.ModuleList(fold_film(c, f) for c, f in zip(convs[1:n], films[1:]))
        if len(convs) > n:  # expert_scope "all": the tail and the context convs fold too (no FiLM on them)
            plain.tail = convs[n]
            if plain.context is not None:
                plain.context.conv1, plain.context.conv2, plain.context.out = convs[n + 1:]
        return plain.eval()


class SeedStudent(nn.Module):
    """The seed project's student, kept as a baseline: three full-resolution 3×3 convs (3→32→32→3), global skip."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.config = dict(width=width)
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, 3, 3, padding=1)

    multiple = 1

    def forward(self, x, return_features: bool = False, stream=None):  # blind: ``stream`` is not used
        y1 = F.relu(self.conv1(x - 0.5))
        y2 = F.relu(self.conv2(y1))
        out = x + self.conv3(y2)
        return (out, [y1, y2]) if return_features else out

    def feature_points(self) -> tuple[int, ...]:
        return (0, 1)


class StreamEstimator(nn.Module):
    """Guesses a frame's stream from a bag of crops of its pixels: how much it was shrunk, which codec, how hard.

    Why: a frame of unknown history is restored blind, and blind can harm (halos on a smooth portrait), while a
    net told its stream does not; ``kd.estimate`` tells the net this guess instead. What a link leaves is in the
    spectrum: upscaling by s empties the frequencies above 1/s of Nyquist, a codec's blocks (8·s px apart once
    shown) put peaks at their harmonics, its 4:2:0 chroma halves the chroma's band and its quantiser flattens
    blocks. So the features are fixed (``features``: FFTs and counts) and a small MLP reads them. Learning the
    same from pixels with a small conv net had not started after 400 steps on this project's CPU; this trains in
    minutes.
    Outputs per bag (N×9): log2(scale)/2 and its Laplace log-scale (how unsure), logits of (clean, JPEG, video),
    JPEG strength (100 − quality)/90 and video QP/51, each with its log-scale. Input: N×K×3×S×S crops in [0, 1].
    """

    OUTPUTS = 9

    FLAT_LEVELS = (0.5, 1, 2, 4, 8, 16, 32)  # |detail| thresholds in 8-bit levels: how much of the crop is flat

    def __init__(self, crop: int = 128, hidden: int = 96):
        super().__init__()
        self.config = dict(crop=crop, hidden=hidden)
        self.mlp = nn.Sequential(nn.Linear(2 * crop + len(self.FLAT_LEVELS), hidden), nn.LeakyReLU(0.1),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, self.OUTPUTS))

    multiple = 1

    def spectrum(self, plane: np.ndarray) -> np.ndarray:
        """N×K×S×S -> N×S: log power per frequency 1..S/2 of the rows, then of the columns, averaged over the crops,
        relative to the lowest eighth (so the picture's contrast does not count)."""
        window = np.hanning(plane.shape[-1]).astype(np.float32)
        out = []
        for lines in (plane, plane.swapaxes(-1, -2)):
            lines = (lines - lines.mean(-1, keepdims=True)) * window
            log = np.log(np.square(np.abs(scipy.fft.rfft(lines, axis=-1))).mean((1, 2))[:, 1:] + 1e-12)
            out.append(log - log[:, : max(1, log.shape[1] // 8)].mean(1, keepdims=True))
        return np.concatenate(out, 1)

    def features(self, crops: np.ndarray) -> torch.Tensor:
        """N×K×3×S×S float32 crops -> the fixed features: the luma's spectrum, the chroma's (a codec's 4:2:0 halves
        its band; an uncoded frame keeps it) and the share of pixels whose detail (x minus its 3×3 mean) is under each
        of ``FLAT_LEVELS`` (a hard quantiser flattens blocks). In numpy: torch's thread pool made these small ops take
        100-500 ms instead of 8 on this project's busy 2-vCPU machines."""
        luma = np.einsum("nkcyx,c->nkyx", crops, np.array([0.299, 0.587, 0.114], np.float32))
        chroma = crops[:, :, 2] - crops[:, :, 0]  # B − R: both chroma axes in one plane
        planes = luma.reshape(-1, *luma.shape[2:])
        count = cv2.boxFilter(np.ones_like(planes[0]), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        mean = np.stack([cv2.boxFilter(p, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT) / count
                         for p in planes]).reshape(luma.shape)  # a 3×3 mean of the pixels there are at the edges
        detail = np.abs(luma - mean) * 255
        flat = np.stack([(detail < t).mean((1, 2, 3)) for t in self.FLAT_LEVELS], 1)
        feats = np.concatenate([self.spectrum(luma), self.spectrum(chroma), flat], 1)
        return torch.from_numpy(feats.astype(np.float32))

    def forward(self, crops: torch.Tensor | np.ndarray) -> torch.Tensor:
        crops = crops.numpy() if torch.is_tensor(crops) else crops
        return self.mlp(self.features(crops))


ARCHS = {"teacher": Teacher, "student": Student, "seed": SeedStudent, "estimator": StreamEstimator}

# Named sizes. "teacher-cpu" learns most per CPU-hour of the designs measured on 2 cores (shared/MEASURED.md: the ×2
# grid learns ~40% more per minute than "teacher"'s ×4 grid); "teacher-gpu" is the default for a GPU.
# "student" computes on the ×2 grid: 16 channels, six 3×3 convs, 12.8 k parameters, 5.8 GFLOP per 720p frame; at the
# same cost as "student-x4" (43 k parameters on the ×4 grid, an earlier student) it restores more (README, Results)
# and a 1-pixel shift of the frame moves its output less (half the grid). "student-context" (shipped, grown from a
# trained "student" with --init) adds a ``Context`` branch: 27.2 k parameters, 5.94 GFLOP. The shipped student is that
# net told its stream, with 16 experts on every conv (``expert_scope="all"``), all folded away per stream to run.
CONFIGS = {
    "teacher": dict(arch="teacher", blocks=12, width=96, unshuffle=4),
    "teacher-cpu": dict(arch="teacher", blocks=8, width=48, unshuffle=2),
    "teacher-gpu": dict(arch="teacher", blocks=16, width=128, unshuffle=2),
    "student": dict(arch="student", width=16, convs=4, unshuffle=2, tail_kernel=3),
    "student-context": dict(arch="student", width=16, convs=4, unshuffle=2, tail_kernel=3, context=32, context_pool=8),
    "student-rep": dict(arch="student", width=16, convs=4, unshuffle=2, tail_kernel=3, rep=True),
    "student-x4": dict(arch="student", width=32, convs=3, unshuffle=4, tail_kernel=1),
    "seed": dict(arch="seed", width=32),
}


def build(config: dict | str) -> nn.Module:
    """A fresh model from a config dict (``{"arch": ..., **kwargs}``) or a name in ``CONFIGS``."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown model config {config!r}; choose from {sorted(CONFIGS)}")
        config = CONFIGS[config]
    config = dict(config)
    arch = config.pop("arch")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHS)}")
    known = set(inspect.signature(ARCHS[arch]).parameters)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {arch} config key(s) {unknown}; known: {sorted(known)}")
    return ARCHS[arch](**config)


def is_student(config: dict) -> bool:
    """Students are distilled; teachers learn from clean photos. Decided by the architecture, never by a flag's name."""
    return config["arch"] in ("student", "seed")


def config_of(model: nn.Module) -> dict:
    arch = next(k for k, v in ARCHS.items() if isinstance(model, v))
    return {"arch": arch, **model.config}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, height: int = 720, width: int = 1280) -> float:
    """Multiply-adds ×2 of the convolutions for one frame (what the 'GFLOP per 720p frame' columns report)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        macs += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    m = getattr(model, "multiple", 1)
    with torch.no_grad():
        model(torch.zeros(1, 3, -(-height // m) * m, -(-width // m) * m))
    for h in handles:
        h.remove()
    return 2 * macs / 1e9
