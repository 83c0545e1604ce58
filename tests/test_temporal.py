"""Temporal metrics on synthetic pans (no data/ needed): stable clips score low, flickering ones high."""
import av
import numpy as np
import pytest

from kd.clips import pan_clip, read_clip
from kd.degrade import PRESETS
from kd.temporal import clip_rows, main, motion, warp_error

CALL_PRESET = PRESETS["call"]


@pytest.fixture(scope="module")
def clip(photo):
    return pan_clip(photo, (160, 96), 8)


@pytest.fixture(scope="module")
def flows(clip):
    return motion(clip)


def test_pan_is_smooth_and_flow_trusts_most_pixels(clip, flows):
    assert len(clip) == 8 and clip[0].shape == (96, 160, 3)
    assert not np.array_equal(clip[0], clip[-1])
    assert np.mean([mask.mean() for _, mask in flows]) > 0.8
    assert warp_error(clip, flows) < 3  # the clean pan is predictable from its own motion


def test_flicker_sees_changing_noise_but_not_a_steady_offset(clip, flows):
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in clip]
    brighter = [np.clip(f.astype(int) + 10, 0, 255).astype(np.uint8) for f in clip]
    assert warp_error(noisy, flows, reference=clip) > 4
    assert warp_error(brighter, flows, reference=clip) < 0.5
    assert warp_error(clip, flows, reference=clip) == 0
    with pytest.raises(ValueError, match="one fewer"):
        warp_error(clip[:3], flows)


def test_clip_rows_compare_input_and_restorers(clip):
    rows = {r["method"]: r for r in clip_rows(clip[:5], CALL_PRESET, ["unsharp"], name="pan")}
    assert set(rows) == {"clean", "input (degraded)", "unsharp"}
    assert rows["clean"]["flicker"] == 0 and rows["input (degraded)"]["flicker / input"] == 1
    assert rows["input (degraded)"]["PSNR"] < 40 and rows["input (degraded)"]["flicker"] > 0


def test_read_clip_fits_and_refuses_bad_files(tmp_path, clip):
    path = tmp_path / "pan.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for f in clip:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    frames, fps = read_clip(path, size=(80, 60), max_frames=5)
    assert len(frames) == 5 and frames[0].shape == (60, 80, 3) and fps == 12
    with pytest.raises(FileNotFoundError, match="no video"):
        read_clip(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    with pytest.raises(ValueError, match="not a readable video"):
        read_clip(tmp_path / "junk.mp4")


def test_cli_prints_per_clip_and_mean_tables(tmp_path, capsys):
    out = tmp_path / "temporal.md"
    main(["--clips", "--pans", "astronaut", "--frames", "4", "--size", "96x64", "--models", "unsharp", "--out", str(out)])
    text = capsys.readouterr().out
    assert "pan:astronaut" in text and "warp error" in text and "flicker" in text and "Mean over 1 clips" in text
    assert out.read_text().startswith("# Temporal stability")
    assert f"preset `call` ({CALL_PRESET.describe()})" in text  # kd.degrade's call preset, not a second one of its own
    with pytest.raises(SystemExit, match="unknown preset"):
        main(["--clips", "--preset", "awful"])
    with pytest.raises(SystemExit, match="no video"):
        main(["--clips", str(tmp_path / "nope.mp4"), "--pans"])


def test_a_stream_aware_net_is_told_the_clips_degradation(clip, aware_net_path):
    from kd.degrade import degrade
    from kd.metrics import psnr
    from kd.sharpen import sharpen

    rows = {r["method"]: r for r in clip_rows(clip[:3], CALL_PRESET, [aware_net_path], name="pan")}
    told = [sharpen(degrade(f, CALL_PRESET), model=aware_net_path, stream=CALL_PRESET) for f in clip[:3]]
    blind = [sharpen(degrade(f, CALL_PRESET), model=aware_net_path) for f in clip[:3]]
    assert rows[aware_net_path]["PSNR"] == pytest.approx(np.mean([psnr(t, c) for t, c in zip(told, clip[:3])]))
    assert rows[aware_net_path]["PSNR"] != pytest.approx(np.mean([psnr(b, c) for b, c in zip(blind, clip[:3])]))
