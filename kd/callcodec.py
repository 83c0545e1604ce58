"""A call's video codec path, as WebRTC peers run it: the sender's real-time encoder and picture-size steps, the
receiver's decoder, and each decoded frame's quantiser (what ``kd.degrade.Received`` tells a stream-aware net).

Why its own module: the measured call (``kd.call``) and the call training pairs (``kd.calldata``) must encode exactly
alike, or the nets learn one codec path and are measured on another.

- Sender: libx264 (``tune=zerolatency``, baseline: no B-frames) or libvpx VP8 (``deadline=realtime``, no lag), at a
  target bitrate with a VBV buffer of half a second, a keyframe every 2 s, one packet per frame. As the bitrate
  drops it sends a smaller picture, stepping down the sides by 3/4 and 2/3 in turn as libwebrtc does (``SCALES``).
- Receiver: decodes each packet; the quantiser comes from the bitstream itself: H.264's from the decoder's exported
  encoding parameters (FFmpeg ``venc_params``: frame QP plus the mean block delta), VP8's q index from the frame
  header (RFC 6386 §9.6; the value a browser sums into ``qpSum``).
"""
from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np

from kd.degrade import CALL_LADDER, Received
from kd.imagefile import resize

RTP_CLOCK = 90_000
CALL_CODECS = ("h264", "vp8")
# The sender's picture-size steps (display side / sent side): full size, then libwebrtc's 3/4 and 2/3 steps.
SCALES = (1.0, *CALL_LADDER)
# WebRTC senders shrink the picture when the bits per pixel get too few (libwebrtc's quality scaler, roughly).
MIN_BITS_PER_PIXEL = 0.04


def sender_scale(kbps: float, size: tuple[int, int], fps: float) -> float:
    """The smallest downscale in SCALES that leaves at least MIN_BITS_PER_PIXEL per pixel per frame."""
    w, h = size
    for s in SCALES:
        if kbps * 1000 / (fps * (w / s) * (h / s)) >= MIN_BITS_PER_PIXEL:
            return s
    return SCALES[-1]


def sent_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The (even) picture size a sender sends for a display size=(w, h) shrunk by ``scale``."""
    return max(16, round(size[0] / scale / 2) * 2), max(16, round(size[1] / scale / 2) * 2)


def check_codec(codec: str) -> str:
    """``codec`` if this machine's PyAV can encode it for a call, else a clear error naming what is missing."""
    import av

    if codec not in CALL_CODECS:
        raise ValueError(f"a call's codec is one of {CALL_CODECS}, got {codec!r}")
    lib = {"h264": "libx264", "vp8": "libvpx"}[codec]
    try:
        av.codec.Codec(lib, "w")
    except Exception:
        raise ValueError(f"this PyAV build cannot encode {codec} ({lib} missing)") from None
    return codec


class Encoder:
    """One real-time encoder at a fixed bitrate and picture size (no B-frames, one packet per frame)."""

    def __init__(self, codec: str, size: tuple[int, int], kbps: float, fps: float, threads: int = 1):
        import av

        if not kbps > 0:
            raise ValueError(f"a call's bitrate must be positive, got {kbps} kbit/s")
        bits = int(kbps * 1000)
        self.ctx = av.CodecContext.create("libx264" if check_codec(codec) == "h264" else "libvpx", "w")
        self.ctx.width, self.ctx.height = size
        self.ctx.pix_fmt = "yuv420p"
        self.ctx.time_base = Fraction(1, RTP_CLOCK)
        self.ctx.framerate = Fraction(fps).limit_denominator(1000)
        self.ctx.bit_rate = bits
        self.ctx.gop_size = int(2 * fps)
        self.ctx.thread_count = threads  # in a call the sender is another machine: keep it off the receiver's cores
        common = {"maxrate": str(bits), "bufsize": str(bits // 2)}
        if codec == "h264":
            self.ctx.options = {**common, "preset": "veryfast", "tune": "zerolatency", "profile": "baseline"}
        else:
            self.ctx.options = {**common, "minrate": str(bits), "deadline": "realtime", "cpu-used": "8",
                                "lag-in-frames": "0", "undershoot-pct": "100", "overshoot-pct": "15"}
        self.codec, self.size = codec, size

    def encode(self, rgb: np.ndarray, pts: int):
        """The packet of one frame (scaled to this encoder's size first), or None if the encoder held it back."""
        import av

        small = resize(rgb, self.size) if rgb.shape[1::-1] != self.size else rgb
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(small), format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, Fraction(1, RTP_CLOCK)
        data = b"".join(bytes(p) for p in self.ctx.encode(frame))
        if not data:
            return None
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, Fraction(1, RTP_CLOCK)
        return packet


class Decoder:
    """A receiver's decoder that also reads each frame's quantiser: packets in, (RGB frame, QP or None) out."""

    def __init__(self, codec: str):
        import av

        self.codec = check_codec(codec)
        self.ctx = av.CodecContext.create("h264" if codec == "h264" else "vp8", "r")
        if codec == "h264":
            self.ctx.options = {"export_side_data": "venc_params"}

    def quantiser(self, packet) -> float | None:
        """The quantiser of the frame in ``packet`` alone (VP8: read from its header; H.264: decoded to read it)."""
        if self.codec == "vp8":
            return vp8_q_index(bytes(packet))
        qps = [h264_frame_qp(frame) for frame in self.ctx.decode(packet)]
        return qps[-1] if qps else None

    def decode(self, packet) -> list[tuple[np.ndarray, float | None]]:
        data = bytes(packet)
        out = []
        for frame in self.ctx.decode(packet):
            qp = h264_frame_qp(frame) if self.codec == "h264" else vp8_q_index(data)
            out.append((frame.to_ndarray(format="rgb24"), qp))
        return out


# FFmpeg's AVVideoEncParams: nb_blocks (u32, padded), blocks_offset, block_size (size_t), type (i32), qp (i32), ...
_PARAMS = struct.Struct("=I4xQQii")
_BLOCK = struct.Struct("=iiiii")  # AVVideoBlockParams: src_x, src_y, w, h, delta_qp


def h264_frame_qp(frame) -> float | None:
    """A decoded H.264 frame's mean QP over its macroblocks (frame QP + mean block delta), from FFmpeg's exported
    encoding parameters; None where the decoder did not export them."""
    for side in frame.side_data:
        if "VIDEO_ENC_PARAMS" in str(side.type):
            raw = bytes(side)
            blocks, offset, size, _, qp = _PARAMS.unpack_from(raw)
            if blocks == 0:
                return float(qp)
            deltas = [_BLOCK.unpack_from(raw, offset + i * size)[4] for i in range(blocks)]
            return float(qp + np.mean(deltas))
    return None


class _BoolDecoder:
    """VP8's boolean entropy decoder (RFC 6386 §7), enough to read the frame header's fixed-probability fields."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 2
        self.value = (data[0] << 8) | data[1]
        self.range, self.bits = 255, 0

    def bool(self, prob: int = 128) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        big = split << 8
        if self.value >= big:
            bit, self.range, self.value = 1, self.range - split, self.value - big
        else:
            bit, self.range = 0, split
        while self.range < 128:
            self.value, self.range, self.bits = self.value << 1, self.range << 1, self.bits + 1
            if self.bits == 8:
                self.bits = 0
                if self.pos < len(self.data):
                    self.value |= self.data[self.pos]
                self.pos += 1
        return bit

    def literal(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bool()
        return v

    def skip_signed(self, n: int) -> None:
        """An optional signed field: a flag, then n bits and a sign if set."""
        if self.bool():
            self.literal(n + 1)


def vp8_q_index(data: bytes) -> float | None:
    """The base quantiser index (0-127, ``y_ac_qi``) of a VP8 frame, read from its header; None if it is not one."""
    if len(data) < 10:
        return None
    tag = data[0] | data[1] << 8 | data[2] << 16
    key = not tag & 1
    start = 10 if key else 3
    if key and data[3:6] != b"\x9d\x01\x2a":
        return None
    d = _BoolDecoder(data[start:start + max(2, tag >> 5)])
    if key:
        d.literal(2)  # colour space, clamping
    if d.bool():  # segmentation
        update_map, update_data = d.bool(), d.bool()
        if update_data:
            d.bool()  # absolute or delta
            for _ in range(4):
                d.skip_signed(7)  # quantiser per segment
            for _ in range(4):
                d.skip_signed(6)  # loop filter per segment
        if update_map:
            for _ in range(3):
                if d.bool():
                    d.literal(8)
    d.literal(1 + 6 + 3)  # filter type, loop filter level, sharpness
    if d.bool() and d.bool():  # loop filter deltas enabled, and updated in this frame
        for _ in range(8):
            d.skip_signed(6)
    d.literal(2)  # DCT partitions
    return float(d.literal(7))


QP_STEP = {"h264": 3, "vp8": 8}  # quantisers are told in these steps: a stream folds and compiles a few nets, not one per QP


def told_step(codec: str, qp: float | None) -> float | None:
    """A quantiser rounded to its codec's ``QP_STEP``, as receivers tell it."""
    return None if qp is None else round(qp / QP_STEP[codec]) * QP_STEP[codec]


def received(codec: str, scale: float, qp: float | None) -> Received:
    """What the receiver knows of a decoded frame, clipped into the codec's quantiser range."""
    return Received(scale=min(max(scale, 1.0), 8.0), codec=codec, qp=None if qp is None else
                    float(np.clip(qp, 0, 127 if codec == "vp8" else 51)))
