"""kd.sharpen's plumbing, checked with a small random-weight student so it does not depend on shipped weights."""
import numpy as np
import pytest
from PIL import Image

import kd


def test_odd_sizes_keep_shape_and_type(odd_photo, net_path):
    out = kd.sharpen(odd_photo, model=net_path)
    assert out.shape == odd_photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, odd_photo)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 2, 3)])
def test_tiny_images(net_path, shape):
    img = np.full(shape, 128, np.uint8)
    assert kd.sharpen(img, model=net_path).shape == shape


def test_grayscale_rgba_and_16_bit(odd_photo, net_path):
    gray = odd_photo[:, :, 1]
    assert kd.sharpen(gray, model=net_path).shape == gray.shape
    assert kd.sharpen(gray[:, :, None], model=net_path).shape == gray.shape + (1,)
    rgba = np.dstack([odd_photo, np.arange(odd_photo.shape[1], dtype=np.uint8)[None].repeat(odd_photo.shape[0], 0)])
    out = kd.sharpen(rgba, model=net_path)
    assert out.shape == rgba.shape and np.array_equal(out[:, :, 3], rgba[:, :, 3])  # alpha untouched
    deep = odd_photo.astype(np.uint16) * 257
    out16 = kd.sharpen(deep, model=net_path)
    assert out16.dtype == np.uint16
    assert np.abs(out16.astype(int) // 257 - kd.sharpen(odd_photo, model=net_path)).max() <= 1


def test_pil_in_pil_out(odd_photo, net_path):
    for mode in ("RGB", "L", "RGBA", "P"):
        img = Image.fromarray(odd_photo).convert(mode)
        out = kd.sharpen(img, model=net_path)
        assert isinstance(out, Image.Image) and out.size == img.size
        assert out.mode == ("RGB" if mode == "P" else mode)  # a palette comes back as true colour
    seethrough = Image.fromarray(odd_photo).convert("P")
    seethrough.info["transparency"] = 0
    assert kd.sharpen(seethrough, model=net_path).mode == "RGBA"


def test_tiling_is_seamless(photo, net_path):
    """With overlap beyond the receptive field, tiled and whole-image results agree."""
    whole = kd.sharpen(photo, model=net_path, tile=1024)
    tiled = kd.sharpen(photo, model=net_path, tile=128, overlap=48)
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_unaligned_tile_and_overlap_are_rounded_to_the_grid(photo, net_path):
    """A tile of 130 or an overlap of 46 is off the ×4 unshuffle grid; rounded, tiles still match the whole image."""
    whole = kd.sharpen(photo, model=net_path)
    for tile, overlap in ((130, 46), (201, 21), (510, 46)):
        tiled = kd.sharpen(photo, model=net_path, tile=tile, overlap=overlap)
        assert np.abs(whole.astype(int) - tiled).max() <= 1, (tile, overlap)


@pytest.fixture(scope="module")
def wide_net(tmp_path_factory) -> str:
    """A deeper student: 15 convs at 1/4 resolution see 60 px around each pixel, beyond the old fixed overlap."""
    import torch

    from kd import checkpoint
    from kd.models import build

    torch.manual_seed(1)
    net = build({"arch": "student", "width": 8, "convs": 14, "unshuffle": 4, "tail_kernel": 1})
    for conv in [net.head, *net.body]:  # He init: the signal from far pixels does not fade on its way through
        torch.nn.init.kaiming_normal_(conv.weight, a=0.1)
    torch.nn.init.normal_(net.tail.weight, std=0.02)
    path = tmp_path_factory.mktemp("wide") / "wide.pt"
    checkpoint.save(path, net)
    return str(path)


def test_default_overlap_follows_the_receptive_field(photo, wide_net):
    from kd.registry import load, receptive_radius

    assert receptive_radius(load(wide_net)) == 60
    whole = kd.sharpen(photo, model=wide_net).astype(int)
    assert np.abs(whole - kd.sharpen(photo, model=wide_net, tile=150)).max() <= 1
    assert np.abs(whole - kd.sharpen(photo, model=wide_net, tile=150, overlap=8)).max() > 3  # the test can fail


def test_classical_methods(odd_photo):
    assert np.array_equal(kd.sharpen(odd_photo, model="none"), odd_photo)
    assert kd.sharpen(odd_photo, model="unsharp").std() > odd_photo.std()


@pytest.mark.parametrize("bad, match", [
    ("picture.png", "numpy array or PIL"),
    (np.zeros((0, 4, 3), np.uint8), "shape"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.int64), "pixel type"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
])
def test_bad_input_gives_a_clear_error(bad, match, net_path):
    with pytest.raises(ValueError, match=match):
        kd.sharpen(bad, model=net_path)


def test_unknown_model_is_an_error(odd_photo):
    with pytest.raises(ValueError, match="unknown model"):
        kd.sharpen(odd_photo, model="gigantic")


def test_stream_reaches_a_stream_aware_net_on_every_backend(odd_photo, net_path, aware_net_path):
    """``stream=`` tells a stream-aware net what the receiver knows (exported runtimes get the net folded for that
    stream, cached apart); a blind net gives the same output whatever the stream."""
    import torch

    from kd import checkpoint
    from kd.degrade import stream_condition
    from kd.runtime import available_backends

    net = checkpoint.load_model(aware_net_path)
    img = odd_photo[:96, :128]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expect = {s: (net(x, stream=stream_condition(s)).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255)
                  for s in ("mild", "severe", None)}
    from kd.runtime import runner

    for backend in [b for b in ("torch", "onnx", "openvino") if b in available_backends()]:
        outs = {s: kd.sharpen(img, model=aware_net_path, backend=backend, stream=s).astype(float)
                for s in ("mild", "severe", None)}
        # OpenVINO computes in bf16 where the CPU has AVX512-BF16 or AMX (its default there): a few levels off
        bf16 = runner(aware_net_path, backend).precision == "bf16"
        for s, out in outs.items():
            assert np.abs(out - expect[s]).max() <= (4 if bf16 else 1.01), (backend, s)
            others = [np.abs(out - expect[o]).mean() for o in expect if o != s]
            assert np.abs(out - expect[s]).mean() < min(others), (backend, s)  # closest to its own stream's output
        assert np.abs(outs["mild"] - outs["severe"]).max() > 2  # the stream really changes the result

    assert runner(aware_net_path, "torch").model.film is None  # not told: the blind modulation is folded too
    blind = [kd.sharpen(img, model=net_path, backend="torch", stream=s) for s in ("mild", "severe", None)]
    assert np.array_equal(blind[0], blind[1]) and np.array_equal(blind[0], blind[2])


def test_the_simulator_tells_a_stream_aware_net_what_it_did(photo, aware_net_path):
    """The app's simulator knows the degradation it applied, as a receiver knows its stream."""
    from kd.compare import simulate
    from kd.degrade import degrade

    images, table = simulate(photo[:128, :128], "severe", (aware_net_path,), backend="torch")
    told = kd.sharpen(degrade(photo[:128, :128], "severe"), model=aware_net_path, backend="torch", stream="severe")
    blind = kd.sharpen(degrade(photo[:128, :128], "severe"), model=aware_net_path, backend="torch")
    assert np.array_equal(images[aware_net_path], told) and not np.array_equal(told, blind)


def test_self_ensemble_turns_each_view_back_before_averaging():
    """A run that is itself flip-equivariant gives the same output however many views are averaged; a run that is not
    (here: adds a left-to-right ramp) is averaged over the views each turned back: with the left-right flip among them
    the ramp cancels to its mean."""
    from kd.sharpen import self_ensemble

    x = np.random.default_rng(0).random((1, 3, 6, 6), dtype=np.float32)
    for n in (1, 2, 4, 8):
        assert np.allclose(self_ensemble(np.square, x, n), x**2, atol=1e-6)
    ramp = np.arange(6, dtype=np.float32)
    assert np.allclose(self_ensemble(lambda a: a + ramp, x, 2), x + 2.5, atol=1e-6)  # (ramp + reversed ramp) / 2
    assert np.allclose(self_ensemble(lambda a: a + ramp, x, 1), x + ramp, atol=1e-6)
    with pytest.raises(ValueError, match="ensemble"):
        self_ensemble(np.square, x, 3)


def test_ensemble_through_sharpen_keeps_shape_and_tiles(odd_photo, net_path):
    """``ensemble`` averages views of each tile: a random net is not flip-equivariant, so 8 views differ from 1; on
    an odd-sized frame cut into tiles (non-square, transposed views) the tiled result still matches the whole."""
    one = kd.sharpen(odd_photo, model=net_path, backend="torch")
    eight = kd.sharpen(odd_photo, model=net_path, backend="torch", ensemble=8)
    assert eight.shape == odd_photo.shape and eight.dtype == np.uint8
    assert np.abs(eight.astype(int) - one).mean() > 0.1
    tiled = kd.sharpen(odd_photo, model=net_path, backend="torch", ensemble=8, tile=96, overlap=48)
    assert np.abs(tiled.astype(int) - eight).max() <= 1
    with pytest.raises(ValueError, match="ensemble"):
        kd.sharpen(odd_photo, model=net_path, ensemble=5)


def test_progress_follows_tiles_views_and_the_teachers_blocks(photo, tmp_path):
    """The app's bar for the teacher (tens of seconds on a photo): kd.sharpen reports as tiles, self-ensemble views and,
    on torch, each block of the net's body finish; it never goes back and ends at 1; the result is unchanged."""
    import torch

    from kd import checkpoint
    from kd.models import build

    torch.manual_seed(3)
    net = build({"arch": "teacher", "blocks": 3, "width": 8, "unshuffle": 2})
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    path = tmp_path / "t.pt"
    checkpoint.save(path, net)
    seen = []
    out = kd.sharpen(photo, model=str(path), backend="torch", stream=None, tile=256, ensemble=2, progress=seen.append)
    assert np.array_equal(out, kd.sharpen(photo, model=str(path), backend="torch", stream=None, tile=256, ensemble=2))
    units = 4 * 2  # 512² in 256² tiles: 4 tiles × 2 views
    assert seen[-1] == 1.0 and seen == sorted(seen) and all(0 < f <= 1 for f in seen)
    assert len(seen) == units * (3 + 1)  # each block of each call, then the call itself
    assert sorted({round(f * units, 6) for f in seen if round(f * units, 6).is_integer()}) == list(range(1, units + 1))
