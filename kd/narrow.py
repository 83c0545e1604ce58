"""A trained student cut to fewer channels: the warm start for a lighter student.

    python -m kd.narrow weights/student.pt runs/student_w12_init.pt --width 12

Why: a browser on 2 cores runs the shipped student at about 14 fps at 360p (``kd.bench_web``), just under the 15 it
should reach; a student 12 channels wide runs at about 19. Trained from scratch on this project's CPU it would need
hours to learn what the shipped one knows; cut from it, it starts close and a short fine-tune recovers the rest.

Each trunk conv keeps the output channels that matter most: mean |activation| on a few degraded photos (each stream
the net is told in training, blind too) times the L1 norm of the weights that read the channel downstream. The
channel the context branch joins keeps one choice for both (the branch adds to it). Everything that reads or writes
a kept channel (the next conv, FiLM's scale and shift, each expert's kernels, the context branch) is sliced alike;
the tail, router and context's hidden layer are kept whole.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from kd import checkpoint
from kd.degrade import stream_condition
from kd.models import Student, build


def _readers(net: Student) -> list[list[torch.Tensor]]:
    """Per trunk layer (head, body...): the weights that read its output channels, as tensors with the channel on
    dim 1 (the next conv, its experts, and for the middle layer the context branch's first conv and its experts)."""
    convs = net.expert_convs()
    n = 1 + len(net.body)
    nxt = [net._conv(c) for c in net.body] + [net.tail]
    readers = []
    for i in range(n):
        ws = [nxt[i].weight]
        if net.experts is not None and (i + 1 < n or len(convs) > n):
            ws.append(net.experts.kernels[i + 1].weight)
        readers.append(ws)
    if net.context is not None:
        middle = net.feature_points()[0] + 1  # trunk layer index of the body conv the context joins
        readers[middle].append(net.context.conv1.weight)
        if net.experts is not None and len(convs) > n:
            readers[middle].append(net.experts.kernels[n + 1].weight)
    return readers


@torch.no_grad()
def channel_scores(net: Student, frames: torch.Tensor, streams: list) -> list[torch.Tensor]:
    """Importance of each output channel of each trunk layer (head, then body), see the module's docstring. The
    activations are measured on the net folded for each stream (None: blind), where every conv is a plain module."""
    acts = [torch.zeros(net.config["width"]) for _ in range(1 + len(net.body))]
    for stream in streams:
        plain = net.for_stream(stream_condition(stream)) if net.film is not None else net.fold()
        def measure(i):
            def hook(_module, _inputs, out):
                acts[i] += out.abs().mean((0, 2, 3))
            return hook

        hooks = [layer.register_forward_hook(measure(i)) for i, layer in enumerate([plain.head, *plain.body])]
        plain(frames)
        for h in hooks:
            h.remove()
    return [a * sum(w.abs().sum((0, 2, 3)) for w in ws) for a, ws in zip(acts, _readers(net))]


def kept_channels(scores: list[torch.Tensor], width: int) -> list[torch.Tensor]:
    """The ``width`` best channels per layer, sorted (the order of the kept channels is kept)."""
    return [s.topk(width).indices.sort().values for s in scores]


@torch.no_grad()
def narrowed(net: Student, width: int, keep: list[torch.Tensor]) -> Student:
    """A student ``width`` channels wide whose every weight is ``net``'s, sliced to the channels in ``keep``."""
    if net.config.get("rep"):
        raise ValueError("narrow a plain student (fold a RepConv one first)")
    if width >= net.config["width"]:
        raise ValueError(f"--width {width} is not narrower than the net's {net.config['width']}")
    config = {"arch": "student"} | net.config | {"width": width}
    small: Student = build(config)
    n = 1 + len(net.body)
    outs = keep  # output channels of trunk layer i
    ins = [None, *keep[:-1]]  # input channels of trunk layer i (the head reads the picture: all)
    big_convs, small_convs = net.expert_convs(), small.expert_convs()
    k = net.experts.k if net.experts is not None else 1

    def cut(w: torch.Tensor, out_idx, in_idx, groups: int = 1) -> torch.Tensor:
        if out_idx is not None:
            w = w.unflatten(0, (groups, -1))[:, out_idx].flatten(0, 1)
        if in_idx is not None and w.dim() > 1:
            w = w[:, in_idx]
        return w

    def copy(dst: nn.Conv2d, src: nn.Conv2d, out_idx, in_idx, groups: int = 1):
        dst.weight.copy_(cut(src.weight, out_idx, in_idx, groups))
        dst.bias.copy_(cut(src.bias, out_idx, None, groups))

    middle = net.feature_points()[0] + 1 if net.context is not None else None
    # which channels each expert-bearing conv reads and writes, in expert_convs' order
    io = [(outs[i], ins[i]) for i in range(n)] + [(None, outs[-1])]
    if net.context is not None:
        io += [(None, outs[middle]), (None, None), (outs[middle], None)]
    for j, (dst, src) in enumerate(zip(small_convs, big_convs)):
        copy(dst, src, *io[j])
        if net.experts is not None and j < len(net.experts.kernels):
            copy(small.experts.kernels[j], net.experts.kernels[j], io[j][0], io[j][1], groups=k)
    if net.experts is not None:
        small.experts.router.load_state_dict(net.experts.router.state_dict())
    if net.film is not None:
        w = net.config["width"]
        rows = torch.cat([torch.cat([2 * i * w + outs[i], (2 * i + 1) * w + outs[i]]) for i in range(n)])
        small.film.mlp[0].load_state_dict(net.film.mlp[0].state_dict())
        small.film.mlp[-1].weight.copy_(net.film.mlp[-1].weight[rows])
        small.film.mlp[-1].bias.copy_(net.film.mlp[-1].bias[rows])
    return small.eval()


def main(argv=None):
    from kd.clips import fit, load_photo
    from kd.data import to_tensor
    from kd.degrade import PRESETS, degrade

    ap = argparse.ArgumentParser(prog="python -m kd.narrow", description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="a trained student checkpoint (e.g. weights/student.pt)")
    ap.add_argument("out", type=Path, help="the narrowed checkpoint, for kd.train --init")
    ap.add_argument("--width", type=int, required=True, help="channels of the narrowed trunk")
    a = ap.parse_args(argv)
    net = checkpoint.load_model(a.src).float().eval()
    if not isinstance(net, Student):
        raise SystemExit(f"{a.src} is not a student")
    frames = torch.stack([to_tensor(degrade(fit(load_photo(name), (256, 256)), preset))
                        for name in ("astronaut", "coffee", "chelsea") for preset in PRESETS])
    streams = [None, *PRESETS] if net.film is not None else [None]
    scores = channel_scores(net, frames, streams)
    small = narrowed(net, a.width, kept_channels(scores, a.width))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(a.out, small, narrowed_from=str(a.src))
    print(f"{a.out}: width {net.config['width']} -> {a.width}")


if __name__ == "__main__":
    main()
