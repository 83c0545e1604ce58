import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from kd import checkpoint
from kd.data import PatchDataset
from kd.imagefile import write
from kd.degrade import preset
from kd.losses import FeatureAdapters, distillation_loss, restoration_loss
from kd.models import build
from kd.train import main as train_main


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "rocket"):
        write(d / f"{name}.png", getattr(skdata, name)())
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
    student = build("student")
    # the random teacher on the student's unshuffle grid: a random tail's pattern repeats with its grid's period, and
    # a student on a finer grid cannot tell those phases apart (a trained teacher's correction should depend on them little)
    teacher = build({"arch": "teacher", "blocks": 2, "width": 16, "unshuffle": student.config["unshuffle"]}).eval()
    torch.nn.init.normal_(teacher.tail.weight, std=0.05)
    with torch.no_grad():
        t_out, t_feats = teacher(x, return_features=True)
    adapters = FeatureAdapters([student.config["width"]] * 2, [f.shape[1] for f in t_feats])
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


def test_train_cli_saves_resumes_validates_and_distils(photo_dir, tmp_path):
    t = tmp_path / "teacher.pt"
    args = ["--data", str(photo_dir), "--val-data", str(photo_dir), "--batch", "2", "--workers", "0",
            "--eval-every", "2", "--save-every", "2"]
    tiny = '{"arch": "teacher", "blocks": 2, "width": 8, "unshuffle": 2}'
    train_main(["--model-config", tiny, "--steps", "2", "--patch", "112", "--lr", "2e-3", "--warmup", "1",
                "--out", str(t), *args])
    assert checkpoint.load_state(t)["step"] == 2
    train_main(["--model-config", tiny, "--steps", "4", "--patch", "112", "--lr", "2e-3", "--warmup", "1",
                "--out", str(t), "--resume", *args])
    ckpt = checkpoint.load_state(t)
    assert ckpt["step"] == 4 and ckpt["config"]["width"] == 8 and ckpt["trained_seconds"] > 0
    log = [json.loads(line) for line in t.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    # every preset is validated (call needs PyAV, which the test command installs)
    assert {"clean_psnr", "gain_mild", "gain_medium", "gain_severe", "gain_call", "score"} <= set(log[0])
    assert all(np.isfinite(r["score"]) for r in log)
    # the best checkpoint holds the EMA weights of the best-scoring validation
    best = checkpoint.load_state(t.with_suffix(".best.pt"))
    assert best["meta"]["validation"]["score"] == max(r["score"] for r in log)
    assert torch.equal(best["model"]["tail.weight"], checkpoint.load_state(t, prefer_ema=True)["model"]["tail.weight"]) \
        or best["meta"]["step"] != 4

    s = tmp_path / "student.pt"
    train_main(["--model", "student-rep", "--teacher", str(t.with_suffix(".best.pt")), "--steps", "2", "--patch", "64",
                "--feature-weight", "0.1", "--out", str(s), *args])
    ckpt = checkpoint.load_state(s)
    assert ckpt["config"]["arch"] == "student" and ckpt["config"]["rep"] and ckpt["adapters"] is not None
    assert ckpt["args"]["pixel_loss"] == "mse" and ckpt["args"]["teacher"] == str(t.with_suffix(".best.pt"))
    assert checkpoint.load_model(s).config["rep"] is False  # inference loads the folded net


@pytest.mark.parametrize("target", ["main", "group"])
def test_sigterm_saves_the_state_for_resume(photo_dir, tmp_path, target):
    """A background run is stopped with `kill` (SIGTERM; it ignores SIGINT): it must save before it exits.

    "group": a session's end signals every process, the DataLoader worker included; the worker must not die first
    and make the main raise "worker killed" instead of saving.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "t.pt"
    cmd = [sys.executable, "-m", "kd.train", "--model-config", '{"arch": "teacher", "blocks": 1, "width": 8}',
           "--data", str(photo_dir), "--val-data", str(photo_dir), "--batch", "2", "--patch", "64",
           "--workers", "1" if target == "group" else "0",
           "--msssim-weight", "0", "--steps", "1000000", "--eval-every", "1000000", "--save-every", "1000000",
           "--out", str(out)]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert '"config"' in proc.stdout.readline()  # printed as the loop starts
    time.sleep(2)
    if target == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "interrupted: saved step" in rest
    assert checkpoint.load_state(out)["step"] > 0


def test_role_comes_from_the_architecture(photo_dir, tmp_path):
    """`--model student --model-config '{"arch": "teacher"}'` builds a teacher: it must not be distilled as a student."""
    with pytest.raises(SystemExit, match="teacher"):
        train_main(["--model", "student", "--model-config", '{"arch": "teacher", "blocks": 1, "width": 8}',
                    "--teacher", "t.pt", "--data", str(photo_dir), "--out", str(tmp_path / "x.pt")])


def test_progress_and_header_name_the_net_being_trained(photo_dir, tmp_path, capsys):
    """A student given by --model-config (the --model default is "teacher") is announced as a student."""
    train_main(["--model-config", '{"arch": "student", "width": 8, "convs": 1, "unshuffle": 2}', "--no-kd",
                "--steps", "1", "--patch", "64", "--batch", "2", "--workers", "0", "--eval-every", "1",
                "--data", str(photo_dir), "--val-data", str(photo_dir), "--out", str(tmp_path / "s.pt")])
    out, err = capsys.readouterr()
    assert "train student" in err and "train teacher" not in err
    assert json.loads(out.splitlines()[0])["model"] == "student"


def test_ema_follows_the_weights_with_warm_up():
    from torch.optim.swa_utils import AveragedModel

    from kd.train import ema_avg

    net = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(net, avg_fn=ema_avg(0.999))
    for v in (1.0, 2.0, 3.0):
        net.weight.data.fill_(v)
        ema.update_parameters(net)
    w = ema.module.weight.item()
    # first update copies; then d = min(0.999, (1+n)/(10+n)) = 2/11, 3/12
    expected = 1.0
    for n, v in ((1, 2.0), (2, 3.0)):
        d = (1 + n) / (10 + n)
        expected = d * expected + (1 - d) * v
    assert abs(w - expected) < 1e-6 and 2.0 < w < 3.0


def test_score_penalises_harm_on_clean_frames():
    from kd.train import score

    good = {"gain_medium": 1.0, "gain_mild": 0.5, "clean_psnr": 45.0}
    harmful = {"gain_medium": 1.2, "gain_mild": 0.6, "clean_psnr": 39.0}
    assert score(good) == pytest.approx(0.75) and score(harmful) == pytest.approx(0.9 - 3.0)
    worse_on_mild = {"gain_medium": 1.7, "gain_mild": -0.2, "clean_psnr": 45.0}
    assert score(worse_on_mild) == pytest.approx(0.75 - 0.2) and score(worse_on_mild) < score(good)


def test_train_cli_rejects_contradictions(tmp_path):
    with pytest.raises(SystemExit, match="'widht'"):
        train_main(["--model-config", '{"arch": "student", "widht": 8}', "--out", str(tmp_path / "x.pt")])
    with pytest.raises(SystemExit):
        train_main(["--model", "student", "--teacher", "t.pt", "--no-kd", "--out", str(tmp_path / "x.pt")])
    # MS-SSIM's 5 scales need > 96 px: refused up front (it used to crash at the first step, after the data loaded)
    with pytest.raises(SystemExit, match="too small for the MS-SSIM loss"):
        train_main(["--model", "teacher-cpu", "--patch", "96", "--data", str(tmp_path / "none"),
                    "--out", str(tmp_path / "x.pt")])


def _ddp_rank(rank, world, port, folder):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from kd.train import WithAdapters

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    student = build("student")
    torch.nn.init.normal_(student.tail.weight, std=0.05)
    adapters = FeatureAdapters([student.config["width"]] * 2, [16, 16])
    net = DDP(WithAdapters(student, adapters))
    torch.manual_seed(1 + rank)  # each rank sees different data, as in training
    x = torch.rand(2, 3, 32, 32)
    t_feats = [torch.rand(2, 16, 8, 8), torch.rand(2, 16, 8, 8)]
    restored, feat = net(x, t_feats)
    (restored.mean() + feat).backward()
    grads = torch.cat([p.grad.flatten() for p in adapters.parameters()])
    gathered = [torch.zeros_like(grads) for _ in range(world)]
    dist.all_gather(gathered, grads)
    if rank == 0:
        torch.save(gathered, out_path(folder))
    dist.destroy_process_group()


def out_path(folder):
    return str(folder) + "/grads.pt"


def test_ddp_all_reduces_the_feature_adapters(tmp_path):
    """Only the student was wrapped in DDP before, so each rank's adapters drifted apart."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, port, tmp_path), nprocs=2, join=True)
    a, b = torch.load(out_path(tmp_path))
    assert a.abs().sum() > 0 and torch.allclose(a, b)


def test_patches_come_with_their_stream_and_some_are_blind():
    """Each pair carries the ``stream_condition`` of the degradation that made it; ``blind_share`` of them are not
    told, and ``scale_only_share`` of the told ones only their scale."""
    from kd.degrade import stream_condition

    ds = PatchDataset([skdata.astronaut()], 64, seed=1, degradation=preset("severe"), blind_share=0.3,
                      scale_only_share=0.5)
    streams = np.stack([s.numpy() for _, (_, _, s) in zip(range(400), iter(ds))])
    told, codec_told = streams[:, 0] == 1, streams[:, 2] == 1
    assert 0.6 < told.mean() < 0.8 and not streams[~told].any()
    assert 0.4 < codec_told[told].mean() < 0.6 and not codec_told[~told].any()
    assert (streams[codec_told] == stream_condition("severe")).all()
    assert (streams[told & ~codec_told] == stream_condition(3.0)).all()


def test_a_blind_teacher_starts_a_stream_aware_run_and_resume_checks_the_config(photo_dir, tmp_path):
    blind, aware = tmp_path / "blind.pt", tmp_path / "aware.pt"
    tiny = ["--model-config", '{"arch": "teacher", "blocks": 1, "width": 8}', "--data", str(photo_dir),
            "--val-data", str(photo_dir), "--batch", "2", "--patch", "64", "--msssim-weight", "0", "--workers", "0",
            "--eval-every", "2"]
    train_main([*tiny, "--steps", "2", "--out", str(blind)])
    train_main([*tiny, "--steps", "4", "--stream-aware", "--init", str(blind), "--out", str(aware)])
    ckpt = checkpoint.load_state(aware)
    assert ckpt["config"]["stream"] is True and any(k.startswith("film.") for k in ckpt["model"])
    rec = json.loads(aware.with_suffix(".log.jsonl").read_text().splitlines()[-1])
    assert {"score", "blind_score", "gain_mild", "blind_gain_mild"} <= set(rec)  # told, and blind as uploads are
    with pytest.raises(SystemExit, match="these flags build"):  # resuming it without --stream-aware
        train_main([*tiny, "--steps", "6", "--resume", "--out", str(aware)])
    with pytest.raises(SystemExit, match="does not fit"):  # a stream-aware net does not --init a blind one
        train_main([*tiny, "--steps", "2", "--init", str(aware), "--out", str(tmp_path / "x.pt")])


def test_a_student_grows_a_context_branch_from_its_init(photo_dir, tmp_path):
    """--init of a student without a context branch starts one with it (the branch is new, the rest is loaded)."""
    small, grown = tmp_path / "small.pt", tmp_path / "grown.pt"
    tiny = ["--model-config", '{"arch": "student", "width": 8, "convs": 2, "unshuffle": 2}', "--no-kd", "--data",
            str(photo_dir), "--val-data", str(photo_dir), "--batch", "2", "--patch", "64", "--workers", "0",
            "--eval-every", "2", "--steps", "2"]
    train_main([*tiny, "--out", str(small)])
    train_main([*tiny[:1], '{"arch": "student", "width": 8, "convs": 2, "unshuffle": 2, "context": 8}', *tiny[2:],
                "--init", str(small), "--out", str(grown)])
    before, after = checkpoint.load_state(small)["model"], checkpoint.load_state(grown)["model"]
    assert any(k.startswith("context.") for k in after) and not any(k.startswith("context.") for k in before)


def test_a_student_grows_more_experts_from_its_init(photo_dir, tmp_path):
    """--init of a student with 2 experts per conv into one with 4 loads (it failed on the kernels' shapes): the 2
    keep their kernels in the first slots (learning rate 0, so nothing moved them)."""
    few, more = tmp_path / "few.pt", tmp_path / "more.pt"
    config = {"arch": "student", "width": 8, "convs": 2, "unshuffle": 2, "experts": 2}
    tiny = ["--no-kd", "--stream-aware", "--data", str(photo_dir), "--val-data", str(photo_dir), "--batch", "2",
            "--patch", "64", "--workers", "0", "--eval-every", "2", "--steps", "2", "--lr", "0"]
    train_main(["--model-config", json.dumps(config), *tiny, "--out", str(few)])
    train_main(["--model-config", json.dumps(config | {"experts": 4}), *tiny, "--init", str(few), "--out", str(more)])
    before, after = checkpoint.load_state(few)["model"], checkpoint.load_state(more)["model"]
    kernels = "experts.kernels.0.weight"
    assert after[kernels].shape[0] == 2 * before[kernels].shape[0]
    assert torch.allclose(after[kernels][: before[kernels].shape[0]], before[kernels], atol=1e-7)  # lr 0: as they were


def test_training_gives_the_process_back_as_it_found_it(photo_dir, tmp_path):
    """kd.train.main left PyTorch's DataLoader SIGCHLD handler installed; in the test run that went on, a later
    subprocess's exit crashed Python (a segmentation fault in test_repo). Now the handler is the one it found."""
    import signal
    import subprocess

    before = signal.getsignal(signal.SIGCHLD)
    train_main(["--model-config", '{"arch": "student", "width": 8, "convs": 1, "unshuffle": 2}', "--no-kd",
                "--data", str(photo_dir), "--val-data", str(photo_dir), "--steps", "2", "--batch", "2", "--patch", "64",
                "--workers", "1", "--eval-every", "2", "--out", str(tmp_path / "s.pt")])
    assert signal.getsignal(signal.SIGCHLD) == before
    assert subprocess.run(["true"]).returncode == 0
