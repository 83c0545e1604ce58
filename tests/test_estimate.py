"""kd.estimate: what a frame's stream probably was, from its JPEG tables and its pixels; and stream="auto" as the
default of kd.sharpen, its command line and the app."""
import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

import kd
from kd.degrade import Degradation, degrade
from kd.estimate import Estimate, estimate, jpeg_quality
from kd.imagefile import jpeg_quantization, write


def photos():
    """scikit-image's photos (none of them trained on: they are in the evaluation set)."""
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "motorcycle": data.stereo_motorcycle()[0], "rocket": data.rocket()}


@pytest.mark.parametrize("quality", [12, 30, 60, 95])
def test_a_jpeg_files_tables_give_its_quality_exactly(tmp_path, quality):
    photo = data.coffee()
    Image.fromarray(photo).save(tmp_path / "pil.jpg", quality=quality)
    cv2.imwrite(str(tmp_path / "cv.jpg"), photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    for name in ("pil.jpg", "cv.jpg"):
        assert jpeg_quality(jpeg_quantization(tmp_path / name)) == quality, name
    with Image.open(tmp_path / "pil.jpg") as im:  # a Pillow JPEG handed to kd.sharpen brings its tables along
        told = estimate(im)
    assert told.source == "JPEG tables + pixels" and told.degradation.codec == "jpeg"
    assert told.degradation.quality <= quality  # at least the damage the file's own coding did


def test_files_without_jpeg_history_have_no_tables(tmp_path):
    write(tmp_path / "a.png", data.coffee())
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg at all")
    assert jpeg_quantization(tmp_path / "a.png") is None
    assert jpeg_quantization(tmp_path / "b.jpg") is None
    assert jpeg_quantization(tmp_path / "missing.jpg") is None
    assert jpeg_quality(None) is None


@pytest.mark.parametrize("preset", ["mild", "medium", "severe"])
def test_the_estimator_reads_degraded_photos(preset):
    """On held-out photos degraded like the presets (no file history: the pixels alone), the estimate names JPEG,
    its quality within 20 and the scale within a factor of 1.5 on most photos, and never more damage than there was
    by much (leaning milder when unsure is what keeps it safe)."""
    truth = kd.PRESETS[preset]
    hits = 0
    for name, photo in photos().items():
        d = estimate(degrade(photo, truth)).degradation
        assert d is not None, name
        good = d.codec == "jpeg" and abs(d.quality - truth.quality) <= 20 and 1 / 1.5 <= d.scale / truth.scale <= 1.5
        hits += good
        assert d.codec == "none" or d.scale <= truth.scale * 1.5, (name, d)
    assert hits >= 3, preset


def test_an_undamaged_photo_looks_undamaged_or_lightly_damaged():
    for name, photo in photos().items():
        d = estimate(photo).degradation
        assert d.codec == "none" or (d.scale <= 1.5 and (d.codec != "jpeg" or d.quality >= 60)), (name, d)


def test_bad_inputs_give_a_sensible_estimate_or_unknown():
    photo = degrade(data.coffee(), "medium")
    gray = photo @ np.array([0.299, 0.587, 0.114])
    cases = {"1x1": np.zeros((1, 1, 3), np.uint8), "0x0": np.zeros((0, 5, 3), np.uint8),
             "thin": np.zeros((3, 400, 3), np.uint8), "gray": gray.astype(np.uint8),
             "16-bit": photo.astype(np.uint16) * 257, "float": photo / 255.0, "rgba": np.dstack([photo, photo[..., :1]]),
             "nan": np.full((64, 64, 3), np.nan), "nan32": np.full((64, 64, 3), np.nan, np.float32),
             "not an image": "hello", "5 channels": np.zeros((20, 20, 5), np.uint8),
             "flat": np.full((300, 300, 3), 128, np.uint8)}
    got = {name: estimate(x) for name, x in cases.items()}
    assert all(isinstance(e, Estimate) for e in got.values())
    for name in ("1x1", "0x0", "thin", "nan", "nan32", "not an image", "5 channels"):
        assert got[name].degradation is None and got[name].describe().startswith("unknown"), name
    ref = got["gray"].degradation  # a frame at another depth or channel count reads as the same stream
    assert got["16-bit"].degradation == got["float"].degradation == got["rgba"].degradation == estimate(photo).degradation
    assert ref is not None and got["flat"].degradation is not None


def test_bad_files_give_a_sensible_estimate_or_unknown(tmp_path, capsys):
    """Files as they come: a 1×1 image, a grayscale and a 16-bit PNG, a PNG of a frame that was a JPEG (no tables
    left: read from its pixels alone), a 1×1 JPEG (its tables are all there is). None raises."""
    from kd.estimate import main
    from kd.imagefile import read

    frame = degrade(data.coffee(), "medium")
    gray = (frame @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    write(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    write(tmp_path / "gray.png", gray)
    write(tmp_path / "deep.png", frame.astype(np.uint16) * 257)
    write(tmp_path / "was_jpeg.png", frame)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "tiny.jpg", quality=50)
    got = {p.stem: estimate(read(p)[0], jpeg_quantization(p)) for p in sorted(tmp_path.glob("*.png"))}
    assert got["tiny"].degradation is None and got["tiny"].describe().startswith("unknown")
    assert got["was_jpeg"].source == "pixels" and got["was_jpeg"].degradation == estimate(frame).degradation
    assert got["was_jpeg"].degradation.codec == "jpeg" and got["was_jpeg"].degradation.scale >= 1.5
    assert got["deep"].degradation == got["was_jpeg"].degradation  # 16 bits read as the 8 they came from
    assert got["gray"].source == "pixels" and got["gray"].degradation is not None
    tiny_jpeg = estimate(read(tmp_path / "tiny.jpg")[0], jpeg_quantization(tmp_path / "tiny.jpg"))
    assert tiny_jpeg.degradation == Degradation(1.0, "jpeg", 50) and tiny_jpeg.source == "JPEG tables"
    assert main([str(p) for p in sorted(tmp_path.iterdir())]) == 0
    out = capsys.readouterr().out
    assert "tiny.png: unknown" in out and "was_jpeg.png: looks like ÷" in out and "(pixels)" in out


def test_the_block_grid_shows_where_a_jpeg_was_coded():
    """A JPEG's 8-px blocks, coded at 1/s of the shown size, show as edges 8·s px apart: near the scale, plainest
    at it on most photos (÷1.5 at q60 leaves faint edges: 4 of 5; ÷2 at q30: all), and an uncoded photo shows no
    plain grid at full size."""
    from kd.estimate import POLICY, block_grid

    for preset, most in (("mild", 4), ("medium", 5)):
        scale, hits = kd.PRESETS[preset].scale, 0
        for name, photo in photos().items():
            grid = block_grid(degrade(photo, preset).astype(np.float32) / 255)
            near = {s: z for s, z in grid.items() if 0.6 < s / scale < 1.6}
            hits += max(near, key=near.get) == scale
            assert block_grid(photo.astype(np.float32) / 255)[1.0] < POLICY.grid_z, name
        assert hits >= most, preset


def test_a_reading_of_more_shrinking_than_the_blocks_show_is_told_the_blocks_scale():
    """The evaluation's building photo at `mild` (÷1.5, q60) is soft by itself: the estimator read it as ÷2.29
    (±0.07, JPEG 84%, q≈54 ±11), told ÷2 the student lost 0.51 dB. A frame's JPEG blocks, 12 px apart at ÷1.5,
    cap the scale told: given that reading, a real ÷1.5 frame is told ÷1.5, not ÷2, and the net gains more."""
    from kd.estimate import Guess, Policy, block_grid, told
    from kd.metrics import psnr

    reading = Guess(log_scale=math.log2(2.29), log_scale_unsure=0.07, codec_probs=(0.0, 0.84, 0.16),
                    jpeg_strength=(100 - 54) / 90, jpeg_unsure=11 / 90, video_strength=34 / 51, video_unsure=4 / 51)
    photo = data.coffee()
    frame = degrade(photo, "mild")
    before = Estimate(*told(reading, None, None, Policy(grid_z=None, clean_when_unsure=False))[:1], "pixels",
                      codec_known=False)
    now, codec_known = told(reading, None, block_grid(frame.astype(np.float32) / 255))
    assert before.stream == 2 and now.scale == 1.5 and not codec_known  # the codec unsure: the scale alone is told
    base = psnr(frame, photo)
    gain = {name: psnr(kd.sharpen(frame, backend="torch", stream=stream), photo) - base
            for name, stream in (("before", before.stream), ("now", now.scale))}
    assert gain["now"] > gain["before"] + 0.05 and gain["now"] > 0, gain


def test_plain_blocks_are_told_as_a_jpeg_at_their_scale_when_the_estimator_is_unsure():
    """An evaluation photo at `severe` (÷3, JPEG q15) read as ÷2.91 ±0.06, H.264 73% at QP≈25: its 8-px blocks 24 px
    apart score far above chance. Told the likelier codec at the blocks' scale (H.264, QP 20 after the lean) the
    student lost 0.13 dB on it; plain blocks are a JPEG's mark, so it is told JPEG at ÷3, and gains."""
    from dataclasses import replace

    from kd.estimate import POLICY, Guess, block_grid, told
    from kd.metrics import psnr

    reading = Guess(log_scale=math.log2(2.91), log_scale_unsure=0.06, codec_probs=(0.0, 0.27, 0.73),
                    jpeg_strength=(100 - 47) / 90, jpeg_unsure=11 / 90, video_strength=25 / 51, video_unsure=4 / 51)
    for name in ("chelsea", "rocket"):
        photo = photos()[name]
        frame = degrade(photo, "severe")
        grid = block_grid(frame.astype(np.float32) / 255)
        now, known = told(reading, None, grid)
        assert known and now.codec == "jpeg" and now.scale == 3.0, (name, now)
        likelier, _ = told(reading, None, grid, replace(POLICY, grid_codecs="any"))
        assert likelier.codec == "h264"
        base = psnr(frame, photo)
        gain = {k: psnr(kd.sharpen(frame, backend="torch", stream=d), photo) - base
                for k, d in (("jpeg", now), ("h264", likelier))}
        assert gain["jpeg"] > 0.1 and gain["jpeg"] > gain["h264"] + 0.15, (name, gain)
    with pytest.raises(ValueError, match="grid_codecs"):  # a misspelt choice is refused, not read as "any"
        replace(POLICY, grid_codecs="JPEG")


@pytest.mark.parametrize("quality", [75, 90])
def test_a_photo_kept_as_a_jpeg_is_left_alone(quality):
    """Photos are kept as JPEGs: at full size with the codec unsure, the frame is told "clean" and left alone
    (≥ 45 dB to its input), where told its scale alone the net restored it blind."""
    from kd.metrics import psnr

    for name, photo in photos().items():
        kept = degrade(photo, Degradation(1.0, "jpeg", quality))
        auto = estimate(kept)
        assert auto.degradation.scale > 1 or auto.codec_known, (name, auto)  # never its scale alone at full size
        assert psnr(kd.sharpen(kept, backend="torch"), kept) >= 45, (name, auto)


def test_the_estimate_reads_as_the_app_shows_it():
    assert Estimate(Degradation(2.0, "jpeg", 30), "pixels").describe() == "looks like ÷2, JPEG q≈30 (pixels)"
    unsure = Estimate(Degradation(2.0, "h264", 32), "pixels", codec_known=False)
    assert unsure.describe() == "looks like ÷2, codec unsure (H264 QP≈32?) (pixels)" and unsure.stream == 2.0
    assert Estimate(Degradation(1.0, "none"), "pixels").describe() == "looks undamaged (pixels)"
    assert Estimate(None, "smaller than 16 px").describe() == "unknown (smaller than 16 px)"


def test_sharpen_defaults_to_the_estimated_stream():
    frame = degrade(data.chelsea(), "medium")
    auto = kd.sharpen(frame, backend="torch")
    assert np.array_equal(auto, kd.sharpen(frame, backend="torch", stream=estimate(frame).stream))
    assert np.array_equal(auto, kd.sharpen(frame, backend="torch", stream=estimate(frame)))
    assert not np.array_equal(auto, kd.sharpen(frame, backend="torch", stream=None))  # not blind


def test_the_command_line_defaults_to_auto_and_says_what_it_estimated(tmp_path, capsys):
    from kd.sharpen import main

    frame = degrade(data.chelsea(), "mild")
    Image.fromarray(frame).save(tmp_path / "frame.jpg", quality=40)
    assert main(["-i", str(tmp_path / "frame.jpg"), "-o", str(tmp_path / "out.png"), "--backend", "torch"]) == 0
    assert "JPEG q≈40 (JPEG tables + pixels)" in capsys.readouterr().out
    image, _ = kd.imagefile.read(tmp_path / "frame.jpg")
    told = kd.sharpen(image, backend="torch", stream=estimate(image, jpeg_quantization(tmp_path / "frame.jpg")))
    assert np.array_equal(kd.imagefile.read(tmp_path / "out.png")[0], told)
    assert main(["-i", str(tmp_path / "frame.jpg"), "-o", str(tmp_path / "blind.png"), "--backend", "torch",
                 "--stream", "unknown"]) == 0
    assert np.array_equal(kd.imagefile.read(tmp_path / "blind.png")[0], kd.sharpen(image, backend="torch", stream=None))


def test_the_app_defaults_to_auto_shows_the_estimate_and_takes_an_override(tmp_path):
    import app

    blocks = app.make_app(max_pixels=300_000, keep_files_s=60)
    known = next(b for b in blocks.blocks.values() if getattr(b, "label", "") == "What the connection did to it, if known")
    assert known.value == "auto"
    sharpen_image = next(f.fn for f in blocks.fns.values() if f.api_name == "sharpen")
    buf = io.BytesIO()
    Image.fromarray(degrade(data.chelsea(), "medium")).save(buf, "JPEG", quality=90)  # a damaged frame, re-saved
    (tmp_path / "f.jpg").write_bytes(buf.getvalue())
    shown, _, state = sharpen_image(str(tmp_path / "f.jpg"))
    assert "Stream: looks like ÷" in state["info"] and "(JPEG tables + pixels)" in state["info"]
    told, _, state = sharpen_image(str(tmp_path / "f.jpg"), "student", "medium")
    assert "Stream:" not in state["info"] and not np.array_equal(shown, told)


def test_training_the_estimator_is_reproducible_by_seed(tmp_path):
    """python -m kd.train_estimator: the same seed gives the same weights (the shipped ones: --seed 0)."""
    import torch

    from kd import checkpoint
    from kd.train_estimator import main as train

    for split, photo in (("train", data.astronaut()), ("train", data.rocket()), ("val", data.coffee())):
        write(tmp_path / split / f"{len(list((tmp_path / split).glob('*')))}.png", photo)
    weights = []
    for run in ("a", "b", "a"):
        args = ["--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--samples", "16", "--steps", "4",
                "--val-every", "2", "--batch", "8", "--out", str(tmp_path / f"{run}.pt"),
                "--log", str(tmp_path / f"{run}.jsonl"), "--seed", "1" if run == "a" else "2"]
        assert train(args) == 0
        weights.append(checkpoint.load_state(tmp_path / f"{run}.pt")["model"])
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_run_of_frames_is_estimated_every_nth_frame_and_held_in_between():
    """kd.estimate.Tracker reads the 1st, 16th, 31st... frame (a live path cannot pay an estimate per frame) and tells
    the held reading in between; on a run of one stream it tells what reading its first frame would."""
    from kd.estimate import Tracker

    photo = photos()["coffee"]
    frames = [degrade(np.roll(photo, 4 * i, axis=1), "medium") for i in range(31)]
    reads = []

    def read(frame):
        reads.append(frame)
        return estimate(frame)

    track = Tracker(read, every=15)
    told = [track(f) for f in frames]
    assert [id(f) for f in reads] == [id(frames[0]), id(frames[15]), id(frames[30])]
    assert all(t is told[0] for t in told[:15])
    assert told[0].stream == estimate(frames[0]).stream != None  # noqa: E711 - a damaged frame is told something


def test_a_tracked_stream_changes_only_when_readings_agree_on_the_change():
    """A single odd reading (an estimate near a snapping boundary) does not change what the net is told: the told
    stream would flicker; two readings in a row that agree do (the link really changed)."""
    from kd.estimate import Tracker

    medium, mild = (Estimate(Degradation(2.0, "jpeg", 30), "pixels"), Estimate(Degradation(1.5, "jpeg", 60), "pixels"))
    readings = iter([medium, mild, medium, mild, mild, mild])
    track = Tracker(lambda _: next(readings), every=1, confirm=2)
    assert [track(None).stream for _ in range(6)] == [medium.stream] * 4 + [mild.stream] * 2
    with pytest.raises(ValueError, match="every and confirm"):
        Tracker(every=0)
