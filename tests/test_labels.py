"""Zoomed training crops, stored teacher labels, and distilling a student from them."""
import numpy as np
import pytest
import torch
from skimage import data as skdata

from kd import checkpoint
from kd.data import zoomed_crop
from kd.imagefile import write
from kd.labels import LabelledPatches, load_labels, make_labels
from kd.models import build
from kd.train import main as train_main


def test_zoomed_crop_shows_more_of_the_scene_within_the_photo():
    ramp = np.tile((np.arange(1000) // 4).astype(np.uint8)[None, :, None], (300, 1, 3))  # +1 level per 4 px
    spans = []
    for seed in range(20):
        crop = zoomed_crop(ramp, 64, 3.0, np.random.default_rng(seed))
        assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
        spans.append(int(crop[0, -1, 0]) - int(crop[0, 0, 0]))  # the levels a row crosses = 1/4 of its window
    assert min(spans) >= 15 and max(spans) > 30 and max(spans) <= 3 * 64 // 4 + 1
    native = zoomed_crop(ramp, 64, 1.0, np.random.default_rng(0))
    assert int(native[0, -1, 0]) - int(native[0, 0, 0]) in (15, 16)
    small = np.zeros((70, 500, 3), np.uint8)  # the window never exceeds the photo's short side
    assert zoomed_crop(small, 64, 3.0, np.random.default_rng(1)).shape == (64, 64, 3)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    for name in ("chelsea", "coffee"):
        write(d / "train" / f"{name}.png", getattr(skdata, name)())
    torch.manual_seed(0)
    net = build({"arch": "teacher", "blocks": 1, "width": 8, "unshuffle": 2, "coring": 1.0})
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    checkpoint.save(d / "teacher.pt", net)
    return d


def test_labels_are_the_teachers_outputs_and_grow_in_place(tiny_teacher):
    d = tiny_teacher
    out = d / "labels.npz"
    make_labels(d / "teacher.pt", d / "train", out, n=5, patch=64, batch=2, chunk=3)
    first = load_labels(out)
    assert first["clean"].shape == first["teacher"].shape == first["degraded"].shape == (5, 64, 64, 3)
    teacher = checkpoint.load_model(d / "teacher.pt").float().eval()
    teacher.config["coring"] = 0.0  # labels are uncored
    with torch.no_grad():
        x = torch.from_numpy(first["degraded"]).permute(0, 3, 1, 2).float() / 255
        expected = (teacher(x).clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(expected - first["teacher"]).max() <= 1
    assert np.abs(first["teacher"].astype(int) - first["degraded"]).max() > 0  # the teacher changed something

    make_labels(d / "teacher.pt", d / "train", out, n=8, patch=64, batch=2)
    grown = load_labels(out)
    assert len(grown["clean"]) == 8 and np.array_equal(grown["teacher"][:5], first["teacher"])

    other = build({"arch": "teacher", "blocks": 1, "width": 8, "unshuffle": 2})
    checkpoint.save(d / "other.pt", other)
    with pytest.raises(SystemExit, match="another teacher"):
        make_labels(d / "other.pt", d / "train", out, n=9, patch=64)


def test_labelled_patches_crop_and_flip_all_three_alike():
    rng = np.random.default_rng(0)
    degraded = rng.integers(0, 200, (3, 48, 48, 3), dtype=np.uint8)
    labels = {"degraded": degraded, "clean": degraded + 50, "teacher": 255 - degraded}
    stream = iter(LabelledPatches(labels, 32, seed=1))
    for _ in range(10):
        x, y, told, t = next(stream)
        x, y, t = (v.numpy() * 255 for v in (x, y, t))
        assert x.shape == (3, 32, 32) and not told.any()  # the labels do not record the stream
        assert np.allclose(y, x + 50, atol=1e-3) and np.allclose(t, 255 - x, atol=1e-3)
    with pytest.raises(SystemExit, match="larger"):
        LabelledPatches(labels, 64)


def test_a_student_distils_from_stored_labels(tiny_teacher, tmp_path):
    d = tiny_teacher
    make_labels(d / "teacher.pt", d / "train", d / "labels.npz", n=5, patch=64, batch=2)
    s = tmp_path / "student.pt"
    train_main(["--model", "student-rep", "--teacher-labels", str(d / "labels.npz"), "--data", str(d / "train"),
                "--val-data", str(d / "train"), "--steps", "2", "--patch", "48", "--batch", "2", "--workers", "0",
                "--eval-every", "2", "--out", str(s)])
    ckpt = checkpoint.load_state(s)
    assert ckpt["step"] == 2 and ckpt["args"]["teacher_labels"] == str(d / "labels.npz")
    with pytest.raises(SystemExit):  # stored labels and a live teacher contradict each other
        train_main(["--model", "student", "--teacher-labels", str(d / "labels.npz"), "--teacher", "t.pt",
                    "--out", str(s)])
    with pytest.raises(SystemExit, match="kd.labels"):
        train_main(["--model", "student", "--teacher-labels", str(d / "missing.npz"), "--data", str(d / "train"),
                    "--val-data", str(d / "train"), "--out", str(s)])


def test_a_stream_aware_teacher_is_told_each_patchs_stream_and_the_labels_keep_it(tiny_teacher, tmp_path):
    """A stream-aware teacher labels each patch told its stream (as training tells it: some blind); the file keeps
    the streams, and LabelledPatches hands each back with its patch, so a stream-aware student is told it too."""
    d = tiny_teacher
    torch.manual_seed(1)
    net = build({"arch": "teacher", "blocks": 1, "width": 8, "unshuffle": 2, "stream": True})
    for p in (*net.film.parameters(), net.tail.weight):
        torch.nn.init.normal_(p, std=0.1)
    checkpoint.save(tmp_path / "aware.pt", net)
    out = tmp_path / "labels.npz"
    make_labels(tmp_path / "aware.pt", d / "train", out, n=12, patch=48, batch=4, ladder_share=0.5)
    labels = load_labels(out)
    assert labels["stream"].shape[0] == 12 and labels["stream"][:, 0].any()  # told a scale on some
    teacher = checkpoint.load_model(tmp_path / "aware.pt").float().eval()
    with torch.no_grad():
        x = torch.from_numpy(labels["degraded"]).permute(0, 3, 1, 2).float() / 255
        told = teacher(x, stream=torch.from_numpy(labels["stream"])).clamp(0, 1)
        blind = teacher(x).clamp(0, 1)
    as_stored = torch.from_numpy(labels["teacher"]).permute(0, 3, 1, 2).float() / 255
    assert (told - as_stored).abs().max() <= 1 / 255 + 1e-6
    assert (blind - as_stored).abs().max() > 2 / 255  # what the blind teacher would have said differs
    streams = {tuple(s.tolist()) for s in labels["stream"]}
    patches = iter(LabelledPatches(labels, 32, seed=2))
    for _ in range(10):
        assert tuple(next(patches)[2].tolist()) in streams
