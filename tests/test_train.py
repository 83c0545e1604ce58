import json

import numpy as np
import pytest
import torch
from skimage import data as skdata

from kd import checkpoint
from kd.data import PatchDataset, write_image
from kd.degrade import preset
from kd.losses import FeatureAdapters, distillation_loss, restoration_loss
from kd.models import build
from kd.train import main as train_main


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "rocket"):
        write_image(d / f"{name}.png", getattr(skdata, name)())
    return d


def fixed_batch(n=8, patch=64, seed=0):
    ds = PatchDataset([skdata.astronaut(), skdata.coffee()], patch, seed=seed, degradation=preset("medium"))
    pairs = [p for p, _ in zip(iter(ds), range(n))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def test_patch_dataset_is_seeded_and_pairs_match():
    a, b = fixed_batch(seed=3), fixed_batch(seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(fixed_batch(seed=4)[1], a[1])
    x, y = a
    assert x.shape == y.shape == (8, 3, 64, 64)
    assert 0 < (x - y).abs().mean() < 0.2  # degraded but still the same content


def test_a_few_steps_lower_the_teacher_loss():
    torch.manual_seed(0)
    x, y = fixed_batch(patch=112)
    net = build({"arch": "teacher", "blocks": 2, "width": 16, "unshuffle": 4})
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = restoration_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the net starts as the identity (loss = the degraded input's); steady descent from there
    assert losses[-1] < 0.98 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5]) + 1e-4


def test_distillation_pulls_student_towards_teacher():
    torch.manual_seed(0)
    x, y = fixed_batch()
    teacher = build({"arch": "teacher", "blocks": 2, "width": 16, "unshuffle": 4}).eval()
    torch.nn.init.normal_(teacher.tail.weight, std=0.05)
    student = build("student")
    with torch.no_grad():
        t_out, t_feats = teacher(x, return_features=True)
    adapters = FeatureAdapters([32, 32], [f.shape[1] for f in t_feats])
    opt = torch.optim.Adam(list(student.parameters()) + list(adapters.parameters()), lr=2e-3)
    def gap():
        return (student(x) - t_out).abs().mean().item()

    before = gap()
    for _ in range(30):
        out, s_feats = student(x, return_features=True)
        loss = distillation_loss(out, y, t_out, alpha=1.0, feature_loss=adapters(s_feats, t_feats))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() < 0.7 * before


def test_train_cli_saves_resumes_and_distils(photo_dir, tmp_path):
    t = tmp_path / "teacher.pt"
    args = ["--data", str(photo_dir), "--batch", "2", "--workers", "0", "--eval-every", "2", "--save-every", "2"]
    train_main(["--model-config", '{"arch": "teacher", "blocks": 2, "width": 8, "unshuffle": 4}',
                "--model", "teacher", "--steps", "2", "--patch", "112", "--out", str(t), *args])
    assert checkpoint.load_state(t)["step"] == 2
    train_main(["--model-config", '{"arch": "teacher", "blocks": 2, "width": 8, "unshuffle": 4}',
                "--model", "teacher", "--steps", "4", "--patch", "112", "--out", str(t), "--resume", *args])
    ckpt = checkpoint.load_state(t)
    assert ckpt["step"] == 4 and ckpt["config"]["width"] == 8
    log = [json.loads(line) for line in t.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["val_psnr_gain_db"]) for r in log)

    s = tmp_path / "student.pt"
    train_main(["--model", "student", "--teacher", str(t), "--steps", "2", "--patch", "64", "--pixel-loss", "mse",
                "--out", str(s), *args])
    ckpt = checkpoint.load_state(s)
    assert ckpt["config"]["arch"] == "student" and ckpt["adapters"] is not None
    assert ckpt["args"]["pixel_loss"] == "mse" and ckpt["args"]["teacher"] == str(t)


def test_train_cli_rejects_contradictions(tmp_path):
    with pytest.raises(SystemExit):
        train_main(["--model", "student", "--teacher", "t.pt", "--no-kd", "--out", str(tmp_path / "x.pt")])
    with pytest.raises(SystemExit, match="no training images"):
        train_main(["--model", "student", "--data", str(tmp_path), "--out", str(tmp_path / "x.pt")])


def test_student_learns_and_keeps_its_units_alive():
    """Regression: at lr 2e-3 a plain conv-ReLU student lost every unit of its last layer and stayed the identity."""
    torch.manual_seed(0)
    x, y = fixed_batch(n=16)
    net = build("student")
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    identity = torch.nn.functional.l1_loss(x, y).item()
    for _ in range(80):
        loss = distillation_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out, feats = net(x, return_features=True)
    assert torch.nn.functional.l1_loss(out, y).item() < 0.97 * identity
    alive = [(f != 0).transpose(0, 1).flatten(1).any(1).float().mean().item() for f in feats]  # per channel
    assert min(alive) > 0.9, alive
