"""Where fetched photos land: people from a mixed album become faces (drawn more often), the rest stay scenes."""
import numpy as np

from kd.data import FACE_PREFIX, KPHOTOALBUM_PEOPLE, SOURCES, _store, draw_weights, list_images, write_image


def test_kphotoalbum_people_are_faces_and_scenes_are_not(tmp_path):
    demo = tmp_path / "root/usr/share/kphotoalbum/demo"
    scenes = ["sunset", "skagen"]
    for name in [*KPHOTOALBUM_PEOPLE[:3], *scenes]:
        write_image(demo / f"{name}.jpg", np.full((40, 60, 3), 128, np.uint8))
    (demo / "index.xml").write_text("<db/>")  # not a photo: never picked

    out = tmp_path / "data"
    for src in (s for s in SOURCES if s.package == "kphotoalbum"):
        for name, path in src.pick(tmp_path / "root").items():
            _store(src.split, name, path, out, max_side=2048, faces=src.faces)

    stored = sorted(p.stem for p in list_images(out / "train"))
    assert stored == sorted([FACE_PREFIX + n for n in KPHOTOALBUM_PEOPLE[:3]] + scenes)
    w = draw_weights(stored, [(40, 60)] * len(stored))
    assert np.allclose(w[[n.startswith(FACE_PREFIX) for n in stored]], 3 * w[[not n.startswith(FACE_PREFIX) for n in stored]][0])
