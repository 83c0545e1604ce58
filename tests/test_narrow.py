"""kd.narrow: a student cut to fewer channels keeps every weight that touches a kept channel."""
import numpy as np
import pytest
import torch

from kd import checkpoint
from kd.degrade import PRESETS, stream_condition
from kd.models import build
from kd.narrow import channel_scores, kept_channels, main, narrowed

SHIPPED_DESIGN = dict(arch="student", width=8, convs=4, unshuffle=2, tail_kernel=3, stream=True, experts=4,
                      context=8, context_pool=4, expert_scope="all")


def random_student(seed=0):
    torch.manual_seed(seed)
    net = build(SHIPPED_DESIGN)
    with torch.no_grad():  # every part trained-looking: non-zero FiLM, router, experts, context, tail
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


@torch.no_grad()
def test_a_channel_nothing_reads_is_cut_and_the_output_is_unchanged():
    net = random_student()
    dead = 5  # make channel 5 of every trunk layer unread: zero it wherever it is read downstream
    for w in [c.weight for c in [*net.body, net.tail, net.context.conv1]] + \
             [net.experts.kernels[i].weight for i in range(1, len(net.experts.kernels))]:
        if w.shape[1] == 8:
            w[:, dead] = 0
    x = torch.rand(2, 3, 32, 48)
    scores = channel_scores(net, x, [None, *PRESETS])
    assert all(int(s.argmin()) == dead and float(s[dead]) == 0 for s in scores)
    keep = kept_channels(scores, 7)
    assert all(dead not in k.tolist() and len(k) == 7 for k in keep)
    small = narrowed(net, 7, keep)
    assert small.config["width"] == 7 and small.config["experts"] == 4
    for stream in [None, stream_condition("mild"), stream_condition("severe")]:
        assert torch.allclose(small(x, stream=stream), net(x, stream=stream), atol=1e-5)
    # and it folds per stream to the plain net a runtime exports
    s = stream_condition("medium")
    assert torch.allclose(small.for_stream(s)(x), net(x, stream=s), atol=1e-5)


@torch.no_grad()
def test_cutting_a_used_channel_changes_the_output_and_refuses_widening():
    net = random_student(1)
    x = torch.rand(1, 3, 32, 32)
    keep = [torch.arange(1, 8)] * 5  # drops channel 0, which is read
    assert not torch.allclose(narrowed(net, 7, keep)(x), net(x), atol=1e-4)
    with pytest.raises(ValueError, match="not narrower"):
        narrowed(net, 8, [torch.arange(8)] * 5)


def test_cli_writes_a_checkpoint_that_loads_with_its_width(tmp_path):
    src = tmp_path / "s.pt"
    checkpoint.save(src, random_student(2))
    main([str(src), str(tmp_path / "n.pt"), "--width", "6"])
    small = checkpoint.load_model(tmp_path / "n.pt")
    assert small.config["width"] == 6
    with torch.no_grad():
        out = small(torch.rand(1, 3, 32, 32))
    assert np.isfinite(out.numpy()).all()
