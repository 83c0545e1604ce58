"""The loopback call: real aiortc peers, real H.264/VP8 over RTP on this machine, frames matched by RTP timestamp."""
import av
import numpy as np
import pytest

from kd.call import Phase, main, parse_schedule, run_call
from kd.callcodec import sender_scale, sent_size
from kd.metrics import psnr
from kd.sharpen import sharpen
from kd.clips import pan_clip

SIZE = (192, 108)


@pytest.fixture(scope="module")
def frames(photo):
    return pan_clip(photo, SIZE, 30, speed=1.5)


def test_schedule_parsing_and_impossible_bitrates():
    assert parse_schedule("1500:4,150:2.5") == [Phase(1500, 4), Phase(150, 2.5)]
    for bad, msg in [("5:3", "impossible"), ("999999:3", "impossible"), ("300", "KBPS:SECONDS"), ("300:0", "phase length")]:
        with pytest.raises(ValueError, match=msg):
            parse_schedule(bad)


def test_sender_shrinks_the_picture_as_the_bitrate_drops():
    scales = [sender_scale(k, (1280, 720), 30) for k in (3000, 1500, 300, 150, 40)]
    assert scales == sorted(scales) and scales[0] == 1 and scales[-1] > 2


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_loopback_call_delivers_matched_sharpened_frames(frames, net_path, codec):
    log = run_call(frames, fps=15, schedule=[Phase(400, 1), Phase(60, 1)], codec=codec, model=net_path,
                   backend="torch", realtime=False)
    assert log.rtp_origin_ok
    assert len(log.received) >= len(frames) - 2  # loopback: (almost) nothing lost
    for i, phase in log.phase.items():  # the sender's picture size follows its bitrate
        assert log.sent_size[i] == sent_size(SIZE, sender_scale((400, 60)[phase], SIZE, 15))
    assert set(log.sharpened) == set(log.received)  # every frame sharpened when not real-time
    qmax = 51 if codec == "h264" else 127
    assert all(q is not None and 0 <= q <= qmax for q in log.qp.values())  # each frame's quantiser, from its bytes
    assert np.mean([log.qp[i] for i in log.qp if log.phase[i] == 1]) > np.mean([log.qp[i] for i in log.qp if log.phase[i] == 0])
    # each received frame is closest to the original with the same index: the RTP timestamp match is right
    for i in sorted(log.received)[2::5]:
        small = log.received[i][1]
        here = psnr(small, _shrink(frames[i], small))
        for j in (i - 3, i + 3):
            if 0 <= j < len(frames):
                assert here > psnr(small, _shrink(frames[j], small))
    # what the receiver shows is kd.sharpen of the upscaled decoded frame
    i = sorted(log.sharpened)[-1]
    import cv2

    up = cv2.resize(log.received[i][1], SIZE, interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(log.sharpened[i][1], sharpen(up, model=net_path, backend="torch"))
    assert not np.array_equal(log.sharpened[i][1], up)


def _shrink(frame, like):
    import cv2

    return cv2.resize(frame, like.shape[1::-1], interpolation=cv2.INTER_AREA)


def test_cli_writes_table_plot_and_side_by_side_video(tmp_path, net_path):
    main(["--size", "160x96", "--schedule", "300:0.6,60:0.6", "--fps", "15", "--model", net_path, "--backend", "torch",
          "--out", str(tmp_path / "call"), "--video", str(tmp_path / "call.mp4")])
    table = (tmp_path / "call.md").read_text()
    assert "| 300" in table and "| 60" in table and "ΔPSNR" in table and "added ms p95" in table
    assert "flicker ×input" in table and "QP median" in table
    assert (tmp_path / "call.png").stat().st_size > 1000
    with av.open(str(tmp_path / "call.mp4")) as v:
        s = v.streams.video[0]
        assert (s.width, s.height) == (320, 96) and s.frames > 5


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no video at"):
        main(["--clip", str(tmp_path / "missing.mp4")])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SystemExit, match="not a readable video"):
        main(["--clip", str(junk)])
    with pytest.raises(SystemExit, match="impossible"):
        main(["--schedule", "1500:2,5:2"])
    with pytest.raises(SystemExit, match="size"):
        main(["--size", "fullhd"])
    with pytest.raises(SystemExit, match="no video stream"):  # a file with sound only
        main(["--clip", str(_audio_only(tmp_path / "voice.m4a"))])


def _audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_receiver_can_leave_full_size_frames_alone(frames, net_path):
    import cv2

    from kd.call import Sharpener

    gated = Sharpener(SIZE, net_path, "torch", when="scaled")
    assert np.array_equal(gated.process(frames[0]), frames[0])  # full size: the sender's bitrate was fine
    small = cv2.resize(frames[0], (96, 54), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(gated.process(small), sharpen(up, model=net_path, backend="torch"))
    with pytest.raises(ValueError, match="when must be"):
        Sharpener(SIZE, net_path, "torch", when="sometimes")


def test_receiver_tells_a_stream_aware_net_how_much_the_sender_shrank_the_picture(frames, aware_net_path):
    import cv2

    from kd.call import Sharpener

    small = cv2.resize(frames[0], (96, 54), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC)
    out = Sharpener(SIZE, aware_net_path, "torch", tell="scale").process(small)
    assert np.array_equal(out, sharpen(up, model=aware_net_path, backend="torch", stream=2.0))
    assert not np.array_equal(out, sharpen(up, model=aware_net_path, backend="torch"))


def test_receiver_tells_the_frames_quantiser_once_its_net_is_ready(frames, aware_net_path):
    """Told the QP, a new quantiser step is folded in the background: frames use the scale-and-codec net meanwhile
    (never a stall), then the net told the frame's own QP step."""
    import cv2

    from kd.call import Sharpener
    from kd.degrade import Received

    small = cv2.resize(frames[0], (96, 54), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC)
    receiver = Sharpener(SIZE, aware_net_path, "torch", codec="vp8")
    first = receiver.process(small, qp=70)
    assert np.array_equal(first, sharpen(up, model=aware_net_path, backend="torch", stream=Received(2.0, "vp8")))
    receiver.builder.shutdown(wait=True)  # the net of q 72 (70 in steps of 8) is ready now
    told = receiver.process(small, qp=70)
    assert np.array_equal(told, sharpen(up, model=aware_net_path, backend="torch", stream=Received(2.0, "vp8", 72)))
    assert not np.array_equal(told, first)
    with pytest.raises(ValueError, match="tell must be"):
        Sharpener(SIZE, aware_net_path, "torch", tell="everything")


def test_receiver_prepares_the_net_of_every_stream_before_the_call(frames, aware_net_path):
    """A stream-aware net is folded and compiled per stream; done on the first frame of a new stream it stalled the
    call for seconds. After ``prepare`` no size the sender steps to builds a new runner mid-call."""
    import cv2

    from kd.call import Sharpener
    from kd.callcodec import SCALES
    from kd.runtime import runner

    receiver = Sharpener(SIZE, aware_net_path, "torch")
    receiver.prepare()
    built = runner.cache_info().misses
    for s in SCALES:
        small = cv2.resize(frames[0], sent_size(SIZE, s), interpolation=cv2.INTER_AREA)
        receiver.process(small)
    assert runner.cache_info().misses == built
    assert len({sent_size(SIZE, s) for s in SCALES}) == len(SCALES)  # each step really is a stream of its own
