import numpy as np
import pytest

from kd.degrade import (PRESETS, Degradation, degrade, encode_intra, preset, random_degradation, rgb_to_yuv420,
                        video_codecs_available, with_seed, yuv420_to_rgb)
from kd.metrics import psnr


def test_presets_are_the_documented_ones():
    assert preset("clean") == Degradation(1.0, "none")
    assert preset("mild") == Degradation(1.5, "jpeg", 60)
    assert preset("medium") == Degradation(2.0, "jpeg", 30)
    assert preset("severe") == Degradation(3.0, "jpeg", 15)
    assert preset("call") == Degradation(2.0, "h264", 32)


def test_clean_preset_is_the_identity(odd_photo):
    out = degrade(odd_photo, "clean")
    assert out.dtype == np.uint8 and np.array_equal(out, odd_photo)


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in ("clean", "call")])
def test_degrade_keeps_size_and_type(odd_photo, name):
    out = degrade(odd_photo, name)
    assert out.shape == odd_photo.shape and out.dtype == np.uint8
    assert 18 < psnr(out, odd_photo) < 40


def test_harsher_presets_harm_more(photo):
    scores = [psnr(degrade(photo, n), photo) for n in ("clean", "mild", "medium", "severe")]
    assert scores[0] == np.inf and scores[0] > scores[1] > scores[2] > scores[3] > 18


def test_same_seed_same_pair(odd_photo):
    assert with_seed(7) == with_seed(7)
    assert np.array_equal(degrade(odd_photo, with_seed(7)), degrade(odd_photo, with_seed(7)))
    draws = {with_seed(s) for s in range(20)}
    assert len(draws) == 20  # seeds actually vary the degradation


def test_random_distribution_covers_clean_light_and_heavy_damage():
    rng = np.random.default_rng(0)
    draws = [random_degradation(rng, ("h264", "h265")) for _ in range(2000)]
    untouched = [d for d in draws if d.codec == "none"]
    assert all(d.scale == 1 and d.blur == 0 for d in untouched) and 0.07 < len(untouched) / len(draws) < 0.13
    damaged = [d for d in draws if d.codec != "none"]
    assert all(1.0 <= d.scale <= 4.0 for d in damaged)
    assert any(d.scale == 1.0 for d in damaged)  # codec only, at full size
    jpeg = [d.quality for d in damaged if d.codec == "jpeg"]
    assert min(jpeg) >= 10 and max(jpeg) <= 95 and max(jpeg) >= 90
    video = [d for d in damaged if d.codec in ("h264", "h265")]
    assert {d.codec for d in video} == {"h264", "h265"} and all(20 <= d.quality <= 42 for d in video)
    assert all(d.codec == "jpeg" for d in (random_degradation(rng, ()) for _ in range(200)) if d.codec != "none")


def test_ladder_share_draws_a_calls_downscale_steps_and_leaves_the_default_stream_alone():
    """With ``ladder_share`` half the scaled pairs land on WebRTC's steps (÷4/3, ÷2, ÷8/3, ÷4), each of them; at 0
    the draws are those of a generator that never heard of the ladder (earlier runs stay reproducible)."""
    from kd.degrade import CALL_LADDER

    rng = np.random.default_rng(1)
    draws = [random_degradation(rng, (), ladder_share=0.5) for _ in range(3000)]
    scaled = [d.scale for d in draws if d.scale > 1]
    on_ladder = [s for s in scaled if any(abs(s - step) < 1e-12 for step in CALL_LADDER)]
    assert 0.45 < len(on_ladder) / len(scaled) < 0.55 and {round(s, 3) for s in on_ladder} == {1.333, 2.0, 2.667, 4.0}
    assert all(1.1 <= s <= 4.0 for s in scaled)
    plain, zero = np.random.default_rng(2), np.random.default_rng(2)
    assert [random_degradation(plain, ()) for _ in range(300)] == [random_degradation(zero, (), ladder_share=0.0)
                                                                   for _ in range(300)]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_video_codec_roundtrip(odd_photo, codec):
    if codec not in video_codecs_available():
        pytest.skip(f"PyAV cannot encode {codec} here")
    out = degrade(odd_photo, Degradation(2.0, codec, 35))
    assert out.shape == odd_photo.shape
    assert 20 < psnr(out, odd_photo) < 40


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_qp_changes_bitstream_size_and_quality_monotonically(photo, codec):
    """A QP that the encoder ignored (or that x264's ipratio silently lowered for intra frames) would fail this."""
    if codec not in video_codecs_available():
        pytest.skip(f"PyAV cannot encode {codec} here")
    results = [encode_intra(photo, codec, qp) for qp in (22, 27, 32, 37, 42)]
    sizes = [n for _, n in results]
    scores = [psnr(out, photo) for out, _ in results]
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert 30 < scores[2] < 34  # QP 32 on this photo: ~32 dB; ~3 QP finer (≈+1.5 dB) if ipratio were left at 1.4


def test_yuv420_conversion_is_unbiased(photo):
    """swscale's rgb24→yuv420p darkened textured photos by ~1.2 levels on average; ours keeps the mean."""
    yuv = rgb_to_yuv420(photo)
    assert yuv.shape == (photo.shape[0] * 3 // 2, photo.shape[1])
    back = yuv420_to_rgb(yuv)
    assert abs(float(back.mean()) - float(photo.mean())) < 0.1
    assert np.abs(back.astype(float).mean(axis=(0, 1)) - photo.mean(axis=(0, 1))).max() < 0.25
    assert psnr(back, photo) > 38  # only 4:2:0 chroma and limited-range rounding are lost
    if "h264" in video_codecs_available():  # the codec round trip at a fine QP keeps the mean too
        out, _ = encode_intra(photo, "h264", 10)
        assert abs(float(out.mean()) - float(photo.mean())) < 0.3


def test_bad_inputs_raise_clear_errors(photo):
    with pytest.raises(ValueError, match="preset"):
        degrade(photo, "awful")
    with pytest.raises(ValueError, match="uint8 RGB"):
        degrade(photo.astype(np.float32), "medium")
    with pytest.raises(ValueError, match="scale"):
        Degradation(scale=0.5)
    with pytest.raises(ValueError, match="quality"):
        Degradation(codec="jpeg", quality=0)


def test_stream_condition_says_what_a_receiver_knows():
    from kd.degrade import stream_condition

    assert not stream_condition(None).any()  # not told: the net restores blind
    clean, mild, medium, severe, call = (stream_condition(p) for p in ("clean", "mild", "medium", "severe", "call"))
    assert clean.tolist() == [1, 0, 1, 0, 0, 0, 0]  # told "nothing was done": the net should leave the frame alone
    assert mild[1] < medium[1] < severe[1] and mild[3] < medium[3] < severe[3]  # scale and JPEG strength grow
    assert call[3] == 0 and call[4] == pytest.approx(32 / 51) and medium[4] == 0  # video QP apart from JPEG quality
    blurred = Degradation(scale=2.0, codec="jpeg", quality=30, blur=0.8)
    assert (stream_condition(blurred) == medium).all()  # the sender's blur is not known to the receiver
    scale_only = stream_condition(2.0)  # a call knows its sizes, not always the quantiser
    assert scale_only[:2].tolist() == medium[:2].tolist() and not scale_only[2:].any()
    with pytest.raises(ValueError, match="scale"):
        stream_condition(0.5)


def test_a_call_frame_is_told_its_codec_quantiser_and_that_it_is_video():
    from kd.degrade import STREAM_FEATURES, Received, stream_condition

    h264 = stream_condition(Received(scale=2.0, codec="h264", qp=32))
    vp8 = stream_condition(Received(scale=2.0, codec="vp8", qp=64))
    assert len(h264) == len(vp8) == STREAM_FEATURES == 7
    assert h264.tolist() == pytest.approx([1, 0.5, 1, 0, 32 / 51, 0, 1])  # QP beside the still codecs' features
    assert vp8.tolist() == pytest.approx([1, 0.5, 1, 0, 0, 64 / 127, 1])  # VP8's q index has its own feature
    still = stream_condition("call")  # the same QP on an intra-coded still is not call video
    assert still[4] == h264[4] and still[6] == 0
    no_qp = stream_condition(Received(scale=2.0, codec="vp8"))  # the codec known, not the quantiser
    assert no_qp.tolist() == pytest.approx([1, 0.5, 0, 0, 0, 0, 1])
    assert stream_condition(Received(scale=2.0)).tolist() == stream_condition(2.0).tolist()  # the scale alone
    for bad in (dict(codec="vp8", qp=128), dict(codec="h264", qp=52), dict(codec="mpeg2", qp=3), dict(scale=0.5)):
        with pytest.raises(ValueError):
            Received(**bad)


def test_nets_told_the_version_1_stream_load_and_restore_as_before(tmp_path, photo):
    """A checkpoint whose stream layers read the 5 features of version 1 loads; its new inputs are wired to nothing."""
    import torch

    from kd import checkpoint
    from kd.degrade import degrade, stream_condition
    from kd.models import build

    torch.manual_seed(0)
    net = build({"arch": "student", "stream": True, "experts": 4, "expert_scope": "all", "context": 8})
    for p in (*net.film.parameters(), *net.experts.router.parameters()):
        torch.nn.init.normal_(p, std=0.1)
    state = net.state_dict()
    old = {k: (v[:, :5].clone() if k in ("film.mlp.0.weight", "experts.router.0.weight") else v) for k, v in state.items()}
    torch.save({"config": net.config | {"arch": "student"}, "model": old}, tmp_path / "v1.pt")
    loaded = checkpoint.load_model(tmp_path / "v1.pt")
    x = torch.from_numpy(degrade(photo[:128, :128], "medium")).permute(2, 0, 1)[None].float() / 255
    told = stream_condition("medium")
    widened = {k: v for k, v in state.items()}
    for k in ("film.mlp.0.weight", "experts.router.0.weight"):
        widened[k] = torch.cat([state[k][:, :5], torch.zeros(state[k].shape[0], 2)], 1)
    net.load_state_dict(widened)
    with torch.no_grad():
        assert torch.allclose(loaded(x, stream=told)[0], net.eval()(x, stream=told)[0], atol=1e-6)
