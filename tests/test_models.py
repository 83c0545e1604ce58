import numpy as np
import pytest
import torch

from kd import checkpoint
from kd.models import CONFIGS, Student, build, config_of, count_params, gflops


@pytest.mark.parametrize("name", list(CONFIGS))
def test_output_matches_input_shape(name):
    net = build(name).eval()
    m = getattr(net, "multiple", 1)
    x = torch.rand(2, 3, 5 * m, 7 * m)
    with torch.no_grad():
        out, feats = net(x, return_features=True)
    assert out.shape == x.shape
    assert len(feats) == 2


def test_fresh_models_start_as_identity():
    """Zero-initialised tails make an untrained teacher/student return its input: training starts from 'no harm'."""
    x = torch.rand(1, 3, 32, 48)
    for name in ("teacher", "student"):
        with torch.no_grad():
            assert torch.allclose(build(name)(x), x, atol=1e-6)


def test_student_fits_the_real_time_budget():
    s = build("student")
    assert count_params(s) <= 60_000
    assert gflops(s, 720, 1280) <= 6.0
    assert gflops(build("seed"), 720, 1280) > 3 * gflops(s, 720, 1280)
    assert count_params(build("teacher")) > 20 * count_params(s)


def test_config_round_trip_through_checkpoint(tmp_path):
    net = Student(width=16, convs=2)
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    checkpoint.save(tmp_path / "s.pt", net, step=3)
    back = checkpoint.load_model(tmp_path / "s.pt")
    assert config_of(back) == config_of(net) == {"arch": "student", "width": 16, "convs": 2, "unshuffle": 4,
                                                 "tail_kernel": 1, "rep": False, "coring": 0.0, "stream": False}
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(back(x), net.eval()(x))


def test_bad_configs_and_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown model config"):
        build("giant")
    with pytest.raises(ValueError, match="unknown architecture"):
        build({"arch": "transformer"})
    with pytest.raises(ValueError, match="'widht'"):
        build({"arch": "student", "widht": 24})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load_model(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        checkpoint.load_model(tmp_path / "missing.pt")


def test_folded_rep_student_equals_the_trained_one(tmp_path):
    """RepVGG branches fold into plain 3×3 convs: same outputs, the plain student's size, and a checkpoint of the
    re-parameterised net loads folded."""
    torch.manual_seed(0)
    net = build("student-rep").eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    plain = net.fold()
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert (net(x) - plain(x)).abs().max() < 1e-4
        assert (net(x) - x).abs().max() > 0.05  # the branches really contribute
    assert config_of(plain)["rep"] is False and count_params(plain) == count_params(build("student"))
    checkpoint.save(tmp_path / "rep.pt", net)
    loaded = checkpoint.load_model(tmp_path / "rep.pt")
    assert config_of(loaded)["rep"] is False
    with torch.no_grad():
        assert (loaded(x) - net(x)).abs().max() < 1e-4


def test_coring_drops_small_corrections_and_shrinks_large_ones():
    from kd.models import core

    r = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]) / 255
    assert torch.allclose(core(r, 1.0) * 255, torch.tensor([-2.0, 0, 0, 0, 0, 0, 2.0]), atol=1e-5)
    assert torch.equal(core(r, 0.0), r)
    net = build("student").eval()
    torch.nn.init.normal_(net.tail.weight, std=0.02)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        plain = net(x) - x
        net.config["coring"] = 1.0
        cored = net(x) - x
    assert (cored.abs() <= (plain.abs() - 1 / 255).clamp(min=0) + 1e-6).all()
    assert (cored == 0).float().mean() > (plain == 0).float().mean()


def test_stream_aware_teacher_starts_blind_and_folds_per_stream():
    """A stream-aware teacher initialised from a blind one computes the same (FiLM starts at the identity); once
    trained, each stream gives its own output, and the net folded for one stream is a plain teacher equal to the
    told one (max abs diff < 1e-4)."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    blind = build({"arch": "teacher", "blocks": 2, "width": 8, "unshuffle": 2}).eval()
    torch.nn.init.normal_(blind.tail.weight, std=0.05)
    aware = build(config_of(blind) | {"stream": True}).eval()
    missing, unexpected = aware.load_state_dict(blind.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("film.") for k in missing)
    x = torch.rand(2, 3, 32, 48)
    mild, severe = stream_condition("mild"), stream_condition("severe")
    with torch.no_grad():
        assert torch.allclose(aware(x, stream=mild), blind(x), atol=1e-6)
        for p in aware.film.parameters():
            torch.nn.init.normal_(p, std=0.3)
        told_mild, told_severe, not_told = aware(x, stream=mild), aware(x, stream=severe), aware(x)
        assert (told_mild - told_severe).abs().max() > 0.01 and (told_mild - not_told).abs().max() > 0.01
        plain = aware.for_stream(mild)
        assert config_of(plain)["stream"] is False and count_params(plain) == count_params(blind)
        assert (plain(x) - told_mild).abs().max() < 1e-4
        per_frame = aware(x, stream=torch.stack([torch.from_numpy(mild), torch.from_numpy(severe)]))
        assert torch.allclose(per_frame[0], told_mild[0], atol=1e-6) and torch.allclose(per_frame[1], told_severe[1], atol=1e-6)
    assert blind.for_stream(mild) is blind  # a blind net has nothing to fold


def test_stream_aware_rep_student_folds_to_the_plain_real_time_net(tmp_path):
    """Re-parameterised and told the stream in training; for one stream, a plain student of the shipped size."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    net = build(CONFIGS["student-rep"] | {"stream": True}).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 48, 64)
    call = stream_condition("call")
    with torch.no_grad():
        plain = net.for_stream(call)
        assert config_of(plain) == config_of(build("student")) | {"coring": 0.0}
        assert (plain(x) - net(x, stream=call)).abs().max() < 1e-4
        assert (net(x, stream=call) - net(x)).abs().max() > 0.01
        checkpoint.save(tmp_path / "s.pt", net)
        loaded = checkpoint.load_model(tmp_path / "s.pt")  # folds the branches, keeps the FiLM
        assert config_of(loaded)["rep"] is False and config_of(loaded)["stream"] is True
        assert (loaded(x, stream=call) - net(x, stream=call)).abs().max() < 1e-4
    assert gflops(plain, 720, 1280) == gflops(build("student"), 720, 1280)


def test_stream_experts_start_as_the_net_they_extend_and_fold_to_the_plain_student(tmp_path):
    """Experts added to a trained stream-aware student change nothing until trained (router at zero) yet get a
    gradient at once; trained, each stream mixes its own filters, and the net folded for one stream is the plain
    real-time student computing the same (max abs diff < 1e-4), also after a checkpoint round trip."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    base = build(CONFIGS["student"] | {"stream": True}).eval()
    torch.nn.init.normal_(base.tail.weight, std=0.05)
    net = build(config_of(base) | {"experts": 3}).eval()
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("experts.") for k in missing)
    x = torch.rand(2, 3, 48, 64)
    call, severe = stream_condition("call"), stream_condition("severe")
    assert torch.allclose(net(x, stream=call), base(x, stream=call), atol=1e-6)
    net(x, stream=call).square().mean().backward()
    assert net.experts.router[-1].weight.grad.abs().max() > 0
    with torch.no_grad():
        for p in [*net.experts.kernels.parameters(), net.experts.router[-1].weight]:
            torch.nn.init.normal_(p, std=0.1)
        told_call, told_severe = net(x, stream=call), net(x, stream=severe)
        assert (told_call - told_severe).abs().max() > 0.01
        plain = net.for_stream(call)
        assert config_of(plain) == config_of(build("student")) | {"coring": 0.0}
        assert (plain(x) - told_call).abs().max() < 1e-4
        per_frame = net(x, stream=torch.stack([torch.from_numpy(call), torch.from_numpy(severe)]))
        assert torch.allclose(per_frame[1], told_severe[1], atol=1e-6)
        checkpoint.save(tmp_path / "e.pt", net)
        loaded = checkpoint.load_model(tmp_path / "e.pt")
        assert config_of(loaded)["experts"] == 3 and (loaded(x, stream=call) - told_call).abs().max() < 1e-5
    with pytest.raises(ValueError, match="stream"):
        build(CONFIGS["student"] | {"experts": 2})


def test_a_student_grown_to_more_experts_starts_as_the_one_it_grew_from():
    """``--init`` from a net with 2 experts into one with 5: the old experts keep their slots and the new ones start
    idle, so every stream gets the same output as before; the new experts are live (a router change moves it)."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    small = build(CONFIGS["student"] | {"stream": True, "experts": 2}).eval()
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.05)
    big = build(CONFIGS["student"] | {"stream": True, "experts": 5}).eval()
    big.load_state_dict(big.experts.grown_from(small.state_dict()))
    x = torch.rand(2, 3, 32, 48)
    streams = torch.from_numpy(np.stack([stream_condition("mild"), stream_condition("call")]))
    with torch.no_grad():
        assert (big(x, stream=streams) - small(x, stream=streams)).abs().max() < 1e-5
        assert (big.experts.kernels[0].weight[small.experts.kernels[0].weight.shape[0]:]).abs().max() > 0
        torch.nn.init.normal_(big.experts.router[-1].weight, std=0.5)
        assert (big(x, stream=streams) - small(x, stream=streams)).abs().max() > 1e-3
    state = big.state_dict()
    assert small.experts.grown_from(state) is state  # more experts than this net: left to load_state_dict to refuse


def test_experts_on_the_tail_and_context_grow_from_trunk_experts_and_fold_to_the_plain_student():
    """``expert_scope="all"`` gives the tail and the context branch their own experts (the FiLM leaves them shared by
    every stream). Grown from a net with trunk experts only (fewer of them too) it starts as that net; trained, the new
    experts change the output, and the net folded for a stream is the plain context student computing the same
    (max abs diff < 1e-4), at the same cost."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    old = build(CONFIGS["student-context"] | {"stream": True, "experts": 2}).eval()
    for p in old.parameters():
        torch.nn.init.normal_(p, std=0.05)
    net = build(config_of(old) | {"experts": 4, "expert_scope": "all"}).eval()
    assert len(net.experts.kernels) == len(old.experts.kernels) + 4  # + tail + the context's three convs
    net.load_state_dict(net.experts.grown_from(old.state_dict()))
    x = torch.rand(2, 3, 64, 96)
    streams = torch.from_numpy(np.stack([stream_condition("mild"), stream_condition("call")]))
    with torch.no_grad():
        assert (net(x, stream=streams) - old(x, stream=streams)).abs().max() < 1e-5
        router = net.experts.router[-1].weight.unflatten(0, (len(net.experts.kernels), 4))
        torch.nn.init.normal_(router[5:], std=0.5)  # only the tail's and the context's experts come alive
        told = net(x, stream=streams)
        assert (told - old(x, stream=streams)).abs().max() > 1e-3
        for i, name in enumerate(("mild", "call")):
            plain = net.for_stream(stream_condition(name))
            assert config_of(plain) == CONFIGS["student-context"] | {"rep": False, "coring": 0.0, "stream": False}
            assert (plain(x[i:i + 1]) - told[i:i + 1]).abs().max() < 1e-4
    assert gflops(plain, 720, 1280) == gflops(build("student-context"), 720, 1280)
    with pytest.raises(ValueError, match="expert_scope"):
        build(CONFIGS["student-context"] | {"stream": True, "expert_scope": "all"})


def test_experts_mixed_per_frame_equal_the_experts_run_apart():
    """Training mixes each frame's expert kernels into one grouped conv: the same outputs and gradients as running
    every expert and summing (the way ``delta`` does), per frame, channels_last input included."""
    from kd.models import StreamExperts

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    experts = StreamExperts([conv], k=4)
    torch.nn.init.normal_(experts.kernels[0].bias, std=0.1)
    x = torch.rand(3, 6, 10, 12).contiguous(memory_format=torch.channels_last)
    coef = torch.randn(3, 4)
    outputs, grads = [], []
    for run in (lambda: conv(x) + experts.delta(0, x, coef), lambda: experts.mixed(0, conv, x, coef)):
        conv.zero_grad()
        experts.zero_grad()
        y = run()
        (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        outputs.append(y.detach())
        grads.append([conv.weight.grad.clone(), experts.kernels[0].weight.grad.clone()])
    assert (outputs[0] - outputs[1]).abs().max() < 1e-5 and outputs[0].abs().max() > 0.1
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("config", [{"arch": "teacher", "blocks": 2, "width": 8, "unshuffle": 2, "stream": True},
                                    CONFIGS["student"] | {"stream": True, "experts": 2}])
def test_told_coring_thresholds_told_frames_and_folds_with_the_stream(tmp_path, config):
    """``told_coring`` is the threshold of frames told their stream, ``coring`` that of the rest, per frame in a
    batch; the net folded for a stream runs with the one that stream gets, and a checkpoint keeps both."""
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    net = build(config | {"coring": 2.0, "told_coring": 0.0}).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    one_threshold = build(config | {"coring": 2.0}).eval()
    uncored = build(config).eval()
    for other in (one_threshold, uncored):
        other.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 48, 64)
    mild = torch.from_numpy(stream_condition("mild"))
    with torch.no_grad():
        told, blind = net(x, stream=mild), net(x)
        assert torch.allclose(told, uncored(x, stream=mild), atol=1e-6)
        assert (told - one_threshold(x, stream=mild)).abs().max() > 1e-3
        assert torch.allclose(blind, one_threshold(x), atol=1e-6) and (blind - uncored(x)).abs().max() > 1e-3
        per_frame = net(x, stream=torch.stack([mild, torch.zeros_like(mild)]))
        assert torch.allclose(per_frame[0], told[0], atol=1e-6) and torch.allclose(per_frame[1], blind[1], atol=1e-6)
        for stream, want in ((mild, told), (None, blind)):
            plain = net.for_stream(stream)
            assert "told_coring" not in config_of(plain) and (plain(x) - want).abs().max() < 1e-4
        checkpoint.save(tmp_path / "n.pt", net)
        assert config_of(checkpoint.load_model(tmp_path / "n.pt"))["told_coring"] == 0.0
    with pytest.raises(ValueError, match="told_coring .* needs stream=True"):
        build({k: v for k, v in config.items() if k != "experts"} | {"stream": False, "told_coring": 1.0})


def test_a_context_branch_grows_a_student_and_folds_with_it(tmp_path):
    """A context branch added to a trained student changes nothing until trained (its last conv at zero) yet gets a
    gradient at once; trained, it changes the output, the net folded for a stream computes the same (< 1e-4), sides
    pad to unshuffle × pool, tiles with the measured overlap match the whole frame, and the real-time budget holds."""
    import numpy as np
    from skimage import data as skdata

    import kd
    from kd.degrade import stream_condition

    torch.manual_seed(0)
    base = build(CONFIGS["student"] | {"stream": True, "experts": 2}).eval()
    torch.nn.init.normal_(base.tail.weight, std=0.05)
    net = build(config_of(base) | {"context": 16}).eval()
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("context.") for k in missing)
    assert net.multiple == 16 and base.multiple == 2
    x, call = torch.rand(2, 3, 48, 64), stream_condition("call")
    assert torch.allclose(net(x, stream=call), base(x, stream=call), atol=1e-6)
    net(x, stream=call).square().mean().backward()
    assert net.context.out.weight.grad.abs().max() > 0
    with torch.no_grad():
        torch.nn.init.normal_(net.context.out.weight, std=0.2)
        told = net(x, stream=call)
        assert (told - base(x, stream=call)).abs().max() > 1e-3
        plain = net.for_stream(call)
        assert config_of(plain)["context"] == 16 and (plain(x) - told).abs().max() < 1e-4
    checkpoint.save(tmp_path / "c.pt", net)
    photo = skdata.astronaut()[:301, :333]  # no side a multiple of 16
    whole = kd.sharpen(photo, model=str(tmp_path / "c.pt"), backend="torch", stream="call")
    tiled = kd.sharpen(photo, model=str(tmp_path / "c.pt"), backend="torch", stream="call", tile=128)
    assert whole.shape == photo.shape and np.abs(whole.astype(int) - tiled).max() <= 1
    budget = build("student-context")
    assert count_params(budget) <= 60_000 and gflops(budget) <= 6.0
