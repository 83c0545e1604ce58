"""The call's codec path: real libx264 / libvpx encoders, real decoders, quantisers read from the bitstream."""
from fractions import Fraction

import av
import numpy as np
import pytest

from kd.callcodec import (SCALES, Decoder, Encoder, check_codec, h264_frame_qp, sender_scale, sent_size,
                          vp8_q_index)
from kd.degrade import CALL_LADDER
from kd.clips import pan_clip

SIZE = (192, 112)


@pytest.fixture(scope="module")
def frames(photo):
    return pan_clip(photo, SIZE, 12, speed=1.5)


def _fixed_quantiser(codec: str, frames, q: int) -> list[tuple[str, float]]:
    """(picture type, quantiser read back) per frame, encoded at a fixed quantiser."""
    enc = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = *SIZE, "yuv420p", Fraction(1, 30)
    if codec == "h264":  # constant QP, P frames at the same QP as I frames, no adaptive quantisation
        enc.options = {"qp": str(q), "tune": "zerolatency", "x264-params": "ipratio=1:aq-mode=0"}
    else:  # libvpx's 0-63 scale; its table maps 16 -> q index 20, 40 -> 59 (vp8_quantizer_to_qindex)
        enc.bit_rate = 20_000_000  # (libvpx takes a quantiser range only beside a bitrate)
        enc.options = {"qmin": str(q), "qmax": str(q), "deadline": "realtime", "lag-in-frames": "0"}
    dec = Decoder(codec)
    out = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for packet in enc.encode(frame):
            key = packet.is_keyframe
            out += [("I" if key else "P", qp) for _, qp in dec.decode(packet)]
    return out


def test_h264_quantiser_is_read_from_the_decoder(frames):
    got = _fixed_quantiser("h264", frames, 31)
    assert {t for t, _ in got} == {"I", "P"} and all(qp == 31 for _, qp in got)


@pytest.mark.parametrize("q, q_index", [(16, 20), (40, 59), (63, 127)])
def test_vp8_q_index_is_read_from_the_frame_header(frames, q, q_index):
    got = _fixed_quantiser("vp8", frames, q)
    assert {t for t, _ in got} == {"I", "P"} and all(qp == q_index for _, qp in got)


def test_not_a_vp8_frame_has_no_q_index():
    assert vp8_q_index(b"") is None and vp8_q_index(b"\x00" * 12) is None  # a key frame without its start code


def test_rate_control_raises_the_quantiser_as_the_bitrate_drops(frames):
    for codec in ("h264", "vp8"):
        means = []
        for kbps in (800, 60):
            enc, dec = Encoder(codec, SIZE, kbps, 30), Decoder(codec)
            qps = [dec.quantiser(p) for i, f in enumerate(frames) if (p := enc.encode(f, i * 3000)) is not None]
            means.append(np.mean(qps[2:]))
        assert means[1] > means[0] + 5, (codec, means)


def test_decoder_returns_frames_at_the_sent_size(frames):
    enc, dec = Encoder("vp8", (96, 56), 200, 30), Decoder("vp8")
    decoded = [d for i, f in enumerate(frames[:4]) for d in dec.decode(enc.encode(f, i * 3000))]
    assert len(decoded) == 4 and all(rgb.shape == (56, 96, 3) and 0 <= qp <= 127 for rgb, qp in decoded)


def test_sender_steps_down_the_webrtc_ladder():
    assert SCALES == (1.0, *CALL_LADDER)
    assert [sent_size((1280, 720), s) for s in SCALES] == [(1280, 720), (960, 540), (640, 360), (480, 270), (320, 180)]
    assert [sender_scale(k, (1280, 720), 30) for k in (3000, 300, 20)] == [1.0, 2.0, 4.0]


def test_bad_codec_or_bitrate_is_a_clear_error():
    with pytest.raises(ValueError, match="codec"):
        check_codec("mpeg2")
    with pytest.raises(ValueError, match="bitrate must be positive"):
        Encoder("h264", SIZE, 0, 30)


def test_frames_without_exported_parameters_have_no_qp():
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    assert h264_frame_qp(frame) is None
