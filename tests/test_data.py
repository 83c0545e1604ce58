"""Where fetched photos land: people from a mixed album become faces (drawn more often), the rest stay scenes."""
import numpy as np
import pytest

from kd.data import FACE_PREFIX, KPHOTOALBUM_PEOPLE, SOURCES, _store, draw_weights
from kd.imagefile import list_images, write


def test_kphotoalbum_people_are_faces_and_scenes_are_not(tmp_path):
    demo = tmp_path / "root/usr/share/kphotoalbum/demo"
    scenes = ["sunset", "skagen"]
    for name in [*KPHOTOALBUM_PEOPLE[:3], *scenes]:
        write(demo / f"{name}.jpg", np.full((40, 60, 3), 128, np.uint8))
    (demo / "index.xml").write_text("<db/>")  # not a photo: never picked

    out = tmp_path / "data"
    for src in (s for s in SOURCES if s.package == "kphotoalbum"):
        for name, path in src.pick(tmp_path / "root").items():
            _store(src.split, name, path, out, max_side=2048, faces=src.faces)

    stored = sorted(p.stem for p in list_images(out / "train"))
    assert stored == sorted([FACE_PREFIX + n for n in KPHOTOALBUM_PEOPLE[:3]] + scenes)
    w = draw_weights(stored, [(40, 60)] * len(stored))
    assert np.allclose(w[[n.startswith(FACE_PREFIX) for n in stored]], 3 * w[[not n.startswith(FACE_PREFIX) for n in stored]][0])


def test_pack_makes_the_asked_number_of_codec_pairs_per_crop(tmp_path):
    """A GPU machine sees only the shard's codec pairs: ``--codec-per-crop 2`` gives each crop two, each the decoded
    small frame of that crop at its own scale; 0 gives none. The shard loads back as training data."""
    from skimage import data as skdata

    from kd.data import load_training, main as data_main
    from kd.imagefile import write

    write(tmp_path / "train" / "coffee.png", skdata.coffee()[:200, :240])
    write(tmp_path / "train" / "chelsea.png", skdata.chelsea()[:180, :200])
    for per_crop, name in ((2, "two.npz"), (0, "none.npz")):
        data_main(["pack", "--src", str(tmp_path / "train"), "--val", str(tmp_path / "no-val"), "--out",
                   str(tmp_path / name), "--max-mb", "0.08", "--size", "96", "--codec-per-crop", str(per_crop)])
    two, none = load_training(tmp_path / "two.npz"), load_training(tmp_path / "none.npz")
    assert len(two.images) >= 2 and not none.codec_pairs
    assert [i for i, _, _ in two.codec_pairs] == [i for i in range(len(two.images)) for _ in range(2)]
    for _, small, d in two.codec_pairs:
        assert max(small.shape[:2]) <= 96 and small.shape[2] == 3
        assert d.codec in ("h264", "h265") and 20 <= d.quality <= 42 and 1 <= d.scale <= 4
    with pytest.raises(SystemExit):
        data_main(["pack", "--src", str(tmp_path / "train"), "--out", str(tmp_path / "x.npz"), "--codec-per-crop", "-1"])


def test_packed_codec_pairs_are_told_their_full_stream(tmp_path):
    """A stream-aware net trained from a shard must be told a codec pair's QP, as a run that makes its own pairs is
    (a receiver knows its quantiser; the `call` preset is told it). Before, shard pairs were told their scale alone,
    so a GPU run never saw told H.264 and lost `call`."""
    from skimage import data as skdata

    from kd.data import PatchDataset, load_training, main as data_main
    from kd.imagefile import write
    from kd.degrade import stream_condition

    write(tmp_path / "train" / "coffee.png", skdata.coffee()[:200, :240])
    data_main(["pack", "--src", str(tmp_path / "train"), "--val", str(tmp_path / "no-val"), "--out",
               str(tmp_path / "s.npz"), "--max-mb", "0.05", "--size", "96", "--codec-per-crop", "3",
               "--ladder-share", "1"])
    shard = load_training(tmp_path / "s.npz")
    scaled = [d.scale for _, _, d in shard.codec_pairs if d.scale > 1]
    assert scaled and all(min(abs(s - r) for r in (4 / 3, 2, 8 / 3, 4)) < 1e-5 for s in scaled)  # on the ladder
    ds = PatchDataset(shard.images, 64, codec_pairs=shard.codec_pairs, codec_share=1.0, blind_share=0.0,
                      scale_only_share=0.0)
    rng = np.random.default_rng(0)
    told = [ds.sample(rng, ())[2] for _ in range(20)]
    conditions = {tuple(stream_condition(d)) for _, _, d in shard.codec_pairs}
    assert all(t[2] == 1 and t[4] > 0 for t in told)  # codec known, video QP told
    assert all(tuple(t) in conditions for t in told)
