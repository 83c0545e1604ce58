"""Shipping a checkpoint: EMA weights, folded, with the coring chosen on clean validation crops."""
import numpy as np
import pytest
import torch
from skimage import data as skdata

import kd
from kd import checkpoint, ship
from kd.data import load_images, validation_pairs
from kd.imagefile import write
from kd.degrade import stream_condition
from kd.models import build


def offset_student(levels: float):
    """A student whose correction is +``levels`` everywhere (zero weights, tail bias only)."""
    net = build({"arch": "student", "width": 8, "convs": 1, "unshuffle": 4})
    with torch.no_grad():
        net.tail.bias.fill_(levels / 255)
    return net.eval()


def test_coring_is_the_smallest_step_that_keeps_clean_frames_above_the_floor():
    clean = np.stack([skdata.astronaut()[100:164, 100:164], skdata.coffee()[50:114, 200:264]])
    # +3.3 levels saves as +3 (38.6 dB from the input); coring 1 and 1.5 leave +2 (42.1 dB), 2 leaves +1 (48.1 dB)
    assert ship.choose_coring(offset_student(3.3), clean, floor=43.0) == 2.0
    assert ship.choose_coring(offset_student(3.3), clean, floor=40.0) == 1.0
    assert ship.choose_coring(offset_student(0.2), clean, floor=43.0) == 0.0
    assert ship.choose_coring(offset_student(50.0), clean, floor=43.0, most=2.0) == 2.0  # capped
    # a brightness offset also makes mildly damaged frames worse: coring grows until it rounds away (3.3 − 3 < 0.5)
    mild = (np.stack([kd.degrade(c, "mild") for c in clean]), clean)
    assert ship.choose_coring(offset_student(3.3), clean, mild, floor=40.0) == 3.0


def test_coring_of_a_stream_aware_net_is_chosen_told_and_blind_apart():
    """A net that shifts clean frames only when told "clean" gets its threshold there, and none when not told
    (one threshold for both shrank every told repair to protect blind frames, or the reverse)."""
    net = build({"arch": "student", "width": 8, "convs": 1, "unshuffle": 4, "stream": True})
    with torch.no_grad():
        for conv in (net.head, *net.body):
            conv.weight.zero_()
            conv.bias.zero_()
        net.film.mlp[0].weight.zero_()
        net.film.mlp[0].bias.zero_()
        net.film.mlp[0].weight[0, 0] = 1.0  # hidden unit 0 = "the stream is known"
        net.film.mlp[-1].weight[3 * 8, 0] = 3.3  # ... shifts the body conv's channel 0 by 3.3
        net.tail.weight[:, 0] = 1 / 255  # ... which the tail adds as +3.3 levels
    clean = np.stack([skdata.astronaut()[100:164, 100:164], skdata.coffee()[50:114, 200:264]])
    net.eval()
    assert ship.choose_coring(net, clean, floor=43.0) == 0.0
    assert ship.choose_coring(net, clean, floor=43.0, told=True) == 2.0
    assert (net.config["coring"], net.config["told_coring"]) == (0.0, 2.0)
    x = torch.from_numpy(clean).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():  # the told frame is cored by 2 (3.3 → 1.3 levels), the blind one is left alone
        told = torch.as_tensor(stream_condition("clean"))
        out = net(x, stream=torch.stack([told, torch.zeros_like(told)])) - x
    assert abs(out[0].mean().item() * 255 - 1.3) < 0.01 and out[1].abs().max() < 1e-6


def test_ship_cli_folds_ema_weights_and_stores_the_coring(tmp_path):
    val = tmp_path / "val"
    write(val / "astronaut.png", skdata.astronaut())
    write(val / "coffee.png", skdata.coffee())
    net = build({"arch": "student", "width": 8, "convs": 1, "unshuffle": 4, "rep": True})
    torch.nn.init.normal_(net.tail.weight, std=0.02)
    checkpoint.save(tmp_path / "run.best.pt", net)
    ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "s.pt"), "--val", str(val)])
    shipped = checkpoint.load_model(tmp_path / "s.pt")
    assert shipped.config["rep"] is False and shipped.config["coring"] in np.arange(0, 4.5, 0.5)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        net.config["coring"] = shipped.config["coring"]
        assert (shipped(x) - net.fold()(x)).abs().max() < 1e-5  # the same function, folded
    ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "h.pt"), "--coring", "2", "--fp16"])
    state = checkpoint.load_state(tmp_path / "h.pt")
    assert state["config"]["coring"] == 2.0 and state["model"]["tail.weight"].dtype == torch.float16
    with pytest.raises(SystemExit):
        ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "x.pt"), "--coring", "lots"])


def test_ship_cli_reads_the_validation_crops_of_a_packed_shard(tmp_path):
    """A GPU machine has the shard, not the photos: coring is chosen on the crops stored in it, the same choice."""
    val = tmp_path / "val"
    write(val / "astronaut.png", skdata.astronaut())
    pairs = validation_pairs(load_images(val), presets=("clean", "mild"))
    np.savez(tmp_path / "shard.npz", **{f"val_{k}": np.stack(v) for k, v in pairs.items()})
    checkpoint.save(tmp_path / "run.best.pt", offset_student(3.3))
    ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "a.pt"), "--val", str(val)])
    ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "b.pt"), "--val", str(tmp_path / "shard.npz")])
    cored = [checkpoint.load_state(tmp_path / f"{n}.pt")["config"]["coring"] for n in "ab"]
    assert cored[0] == cored[1] == 3.0  # the offset rounds away only at 3 levels (see above)
    with pytest.raises(SystemExit, match="no|none"):
        ship.main([str(tmp_path / "run.best.pt"), str(tmp_path / "c.pt"), "--val", str(tmp_path / "missing")])


def test_coring_rises_above_the_smallest_harmless_one_while_it_gains_on_damaged_crops():
    """A +0.7-level offset saves as +1: harmless on clean crops (48 dB) yet a loss on crops whose damage it does not
    repair; given those, the threshold rises to 0.5 (offset gone, gain 0) and no further (no more gain)."""
    clean = np.stack([skdata.astronaut()[100:164, 100:164], skdata.coffee()[50:114, 200:264]])
    noisy = np.clip(clean + np.random.default_rng(0).integers(-3, 4, clean.shape), 0, 255).astype(np.uint8)
    assert ship.choose_coring(offset_student(0.7), clean, floor=43.0) == 0.0
    assert ship.choose_coring(offset_student(0.7), clean, floor=43.0, damaged={"medium": (noisy, clean)}) == 0.5
