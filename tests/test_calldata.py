"""Call training pairs: real clips and pans through the call's real codecs, packed, loaded, drawn for training."""
import numpy as np
import pytest
from skimage import data

from kd import calldata
from kd.data import PatchDataset
from kd.imagefile import write
from kd.degrade import STREAM_FEATURES, Received


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("calls")
    for split, names in (("train", ("astronaut", "coffee")), ("val", ("chelsea",))):
        (root / split).mkdir()
        for name in names:
            write(root / split / f"face-{name}.png" if name == "astronaut" else root / split / f"{name}.png",
                        getattr(data, name)())
    (root / "video").mkdir()
    return calldata.pack(root / "train", root / "val", root / "video", root / "calls.npz", max_mb=1.5, runs=4,
                         crop=96, seed=3)


def test_pairs_are_what_the_receiver_showed_with_what_it_knew(shard):
    pairs, val = calldata.load(shard)
    assert len(pairs) >= 4
    for degraded, clean, stream in pairs:
        assert degraded.shape == clean.shape == (96, 96, 3)
        assert isinstance(stream, Received) and stream.codec in ("h264", "vp8") and 1 <= stream.scale <= 4
        assert stream.qp is not None and 0 <= stream.qp <= (51 if stream.codec == "h264" else 127)
        assert 15 < 10 * np.log10(255**2 / np.mean((degraded.astype(float) - clean) ** 2)) < 60  # damaged, same place
    assert sorted(val) == ["call_h264_hi", "call_h264_lo", "call_vp8_hi", "call_vp8_lo"]
    for name, (degraded, clean, streams) in val.items():
        assert degraded.shape == clean.shape and len(streams) == len(clean) > 0
        assert streams.shape[1] == STREAM_FEATURES and (streams[:, 6] == 1).all()  # told: call video
        feature = 4 if "h264" in name else 5
        assert (streams[:, feature] > 0).all() and not streams[:, 9 - feature].any()  # its codec's quantiser only


def test_low_bitrate_sets_are_more_damaged_than_high(shard):
    _, val = calldata.load(shard)
    for codec in ("h264", "vp8"):
        err = {band: np.mean((val[f"call_{codec}_{band}"][0].astype(float) - val[f"call_{codec}_{band}"][1]) ** 2)
               for band in ("lo", "hi")}
        assert err["lo"] > err["hi"], (codec, err)


def test_training_draws_call_pairs_told_their_stream(shard):
    pairs, _ = calldata.load(shard)
    ds = PatchDataset([data.astronaut()], patch=64, call_pairs=pairs, call_share=1.0, blind_share=0.0,
                      scale_only_share=0.0)
    rng = np.random.default_rng(0)
    for _ in range(8):
        degraded, clean, stream = ds.sample(rng, ())
        assert degraded.shape == clean.shape == (64, 64, 3)
        assert stream[6] == 1 and stream[2] == 1  # call video, quantiser known
    blind = PatchDataset([data.astronaut()], patch=64, call_pairs=pairs, call_share=1.0, blind_share=1.0)
    assert not blind.sample(rng, ())[2].any()


def test_packing_needs_photos(tmp_path):
    with pytest.raises(SystemExit, match="no photos"):
        calldata.pack(tmp_path, tmp_path, tmp_path, tmp_path / "x.npz", max_mb=1, runs=1)
    with pytest.raises(SystemExit, match="kd.calldata pack"):
        calldata.load(tmp_path / "missing.npz")


def test_training_on_call_video_validates_each_codec_and_band(shard, tmp_path):
    """``kd.train --call-data``: call pairs join the training draw and the call sets join validation and the score."""
    import json

    from kd.train import main as train_main

    photos = tmp_path / "photos"
    photos.mkdir()
    write(photos / "coffee.png", data.coffee())
    out = tmp_path / "s.pt"
    train_main(["--model-config", '{"arch": "student", "width": 8, "convs": 1, "unshuffle": 2}', "--stream-aware",
                "--no-kd", "--data", str(photos), "--val-data", str(photos), "--call-data", str(shard),
                "--call-share", "0.5", "--steps", "2", "--batch", "2", "--patch", "64", "--eval-every", "2",
                "--out", str(out)])
    record = json.loads(out.with_suffix(".log.jsonl").read_text().splitlines()[-1])
    for name in ("call_h264_lo", "call_h264_hi", "call_vp8_lo", "call_vp8_hi"):
        assert f"gain_{name}" in record and f"blind_gain_{name}" in record
