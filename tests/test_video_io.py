"""kd.video: frames, frame rate, timestamps and colour tags survive; what is not a video is refused."""
from fractions import Fraction

import av
import numpy as np
import pytest

from kd.video import main as video_main
from kd.video import process

PATCHES = np.array([[200, 30, 30], [30, 180, 40], [40, 50, 210], [230, 220, 40], [220, 170, 140], [90, 90, 90]],
                   np.uint8)


def make_clip(path, frames=12, fps=15, size=(96, 128)):
    from skimage import data

    photo = data.astronaut()
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        for i in range(frames):
            crop = np.ascontiguousarray(photo[100 + 3 * i: 100 + 3 * i + size[0], 150: 150 + size[1]])
            for p in s.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def make_tagged_clip(path, pts=(0, 1, 3, 4, 7, 9, 10, 14)):
    """Flat saturated patches in BT.709 limited range, properly tagged, at irregular timestamps (1/30 s units)."""
    picture = np.repeat(np.repeat(PATCHES.reshape(2, 3, 3), 64, 0), 64, 1)  # 128×192
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.height, s.width = picture.shape[:2]
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 30)
        cc = s.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # BT.709, limited
        s.options = {"crf": "10"}
        for t in pts:
            f = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=1, src_color_range=2, dst_color_range=1, dst_color_trc=1,
                dst_color_primaries=1)
            f.colorspace, f.pts, f.time_base = 1, t, Fraction(1, 30)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def planes_and_times(path):
    """Raw Y, U, V patch means (no RGB conversion involved), colour tags and frame times in seconds."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    f = frames[0]
    y, u, v = (np.asarray(p, dtype=float) for p in (f.to_ndarray()[:128], *f.to_ndarray()[128:].reshape(2, 64, 96)))
    means = [plane.reshape(2, s, 3, s).mean((1, 3)) for plane, s in ((y, 64), (u, 32), (v, 32))]
    return np.stack(means), (f.colorspace, f.color_range, f.color_primaries, f.color_trc), [float(g.time) for g in frames]


def test_identity_keeps_colours_tags_and_timestamps(tmp_path):
    make_tagged_clip(tmp_path / "in.mp4")
    assert process(tmp_path / "in.mp4", tmp_path / "out.mp4", model="none") == 8
    before, tags_in, times_in = planes_and_times(tmp_path / "in.mp4")
    after, tags_out, times_out = planes_and_times(tmp_path / "out.mp4")
    assert tags_in == (1, 1, 1, 1) and tags_out == tags_in
    assert np.abs(after - before).max() <= 2, after - before
    assert times_out == pytest.approx(times_in, abs=1e-3)  # 0, 1/30, 3/30, ...: not respaced to a fixed rate


def test_video_keeps_frames_and_rate(tmp_path, net_path):
    make_clip(tmp_path / "in.mp4")
    n = process(tmp_path / "in.mp4", tmp_path / "out.mp4", model=net_path, simulate="medium", side_by_side=True)
    with av.open(str(tmp_path / "out.mp4")) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        rate = s.average_rate
    assert n == len(frames) == 12 and rate == 15
    assert frames[0].shape == (96, 256, 3)  # degraded | sharpened


def test_video_cli_errors(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SystemExit, match="not a readable video"):
        video_main([str(tmp_path / "junk.mp4"), str(tmp_path / "o.mp4")])
    with pytest.raises(SystemExit, match="no video"):
        video_main([str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4")])


def test_text_file_is_not_a_video(tmp_path):
    """FFmpeg's tty demuxer would turn a text file into a video of its letters."""
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes\n" * 200)
    with pytest.raises(SystemExit, match="text file, not a video"):
        video_main([str(notes), str(tmp_path / "o.mp4")])
    assert not (tmp_path / "o.mp4").exists()


def test_simulated_video_tells_a_stream_aware_net(tmp_path, aware_net_path):
    """With --simulate, the net is told the preset: the video equals the one made by the net folded for it."""
    from kd import checkpoint
    from kd.degrade import stream_condition

    folded = tmp_path / "folded.pt"
    checkpoint.save(folded, checkpoint.load_model(aware_net_path).for_stream(stream_condition("severe")))
    make_clip(tmp_path / "in.mp4")
    videos = {}
    for name, model in (("told", aware_net_path), ("folded", str(folded))):
        process(tmp_path / "in.mp4", tmp_path / f"{name}.mp4", model=model, simulate="severe")
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    assert np.abs(videos["told"].astype(int) - videos["folded"]).mean() < 0.5  # (x264 may code a 1-level change differently)


def test_a_coded_video_tells_the_net_each_frames_quantiser(tmp_path, aware_net_path):
    """An H.264 file is sharpened told each frame's QP (read from its bitstream, in the codec's steps, at scale 1):
    coded at QP 27 throughout, its video equals the one made by the net folded for that stream, and not the blind one."""
    from skimage import data

    from kd import checkpoint
    from kd.degrade import Received, stream_condition
    from kd.video import frames_and_quantisers

    photo = data.astronaut()
    with av.open(str(tmp_path / "in.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=15)
        s.height, s.width, s.pix_fmt = 96, 128, "yuv420p"
        s.options = {"qp": "27", "x264-params": "ipratio=1:pbratio=1:aq-mode=0"}
        for i in range(4):
            crop = np.ascontiguousarray(photo[100 + 3 * i: 196 + 3 * i, 150:278])
            for p in s.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    with av.open(str(tmp_path / "in.mp4")) as c:
        told = [known for _, known in frames_and_quantisers(c, c.streams.video[0], True)]
    assert told == [Received(1.0, "h264", 27.0)] * 4
    folded = tmp_path / "folded.pt"
    checkpoint.save(folded, checkpoint.load_model(aware_net_path).for_stream(stream_condition(told[0])))
    videos = {}
    for name, model, tell in (("told", aware_net_path, "auto"), ("blind", aware_net_path, "nothing"), ("folded", str(folded), "nothing")):
        process(tmp_path / "in.mp4", tmp_path / f"{name}.mp4", model=model, backend="torch", tell=tell)
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(int)
    assert np.abs(videos["told"] - videos["folded"]).mean() < 0.5
    assert np.abs(videos["blind"] - videos["folded"]).mean() > 2


def test_a_video_with_no_quantisers_in_its_bitstream_is_told_its_pixels_estimate(tmp_path):
    """An MPEG-4 file (not a call codec: no quantiser read) is not restored blind: the shipped student is told what
    kd.estimate reads from its pixels (every 15th frame), as kd.sharpen's default is; ``--tell nothing`` is blind."""
    from skimage import data

    from kd.degrade import degrade
    from kd.estimate import estimate

    photo = data.coffee()
    with av.open(str(tmp_path / "in.mp4"), "w") as out:
        s = out.add_stream("mpeg4", rate=15)
        s.height, s.width, s.pix_fmt = 192, 256, "yuv420p"
        s.options = {"qscale": "2"}
        for i in range(3):
            crop = degrade(np.ascontiguousarray(photo[100 + 4 * i: 292 + 4 * i, 150:406]), "medium")
            for p in s.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    from kd import checkpoint
    from kd.degrade import stream_condition
    from kd.registry import weights_path
    from kd.video import colour, to_rgb

    with av.open(str(tmp_path / "in.mp4")) as c:
        first = next(c.decode(c.streams.video[0]))
    reading = estimate(to_rgb(first, colour(first)))
    assert reading.degradation is not None and reading.degradation.scale > 1  # the pixels show the ÷2
    folded = tmp_path / "folded.pt"  # the student folded for that reading: what every frame is told (one reading)
    checkpoint.save(folded, checkpoint.load_model(weights_path("student")).for_stream(stream_condition(reading.stream)))
    videos = {}
    for name, model, tell in (("auto", "student", "auto"), ("pixels", "student", "pixels"),
                              ("blind", "student", "nothing"), ("folded", str(folded), "nothing")):
        process(tmp_path / "in.mp4", tmp_path / f"{name}.mp4", model=model, backend="torch", tell=tell)
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(int)
    assert np.abs(videos["auto"] - videos["folded"]).mean() < 0.5  # (x264 may code a 1-level change differently)
    assert np.array_equal(videos["auto"], videos["pixels"])
    assert np.abs(videos["blind"] - videos["folded"]).mean() > 0.5
    with pytest.raises(ValueError, match="tell must be one of"):
        process(tmp_path / "in.mp4", tmp_path / "x.mp4", tell="qp")
