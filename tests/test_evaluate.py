import pandas as pd
from skimage import data

from kd.data import write_image
from kd.evaluate import main as evaluate_main


def test_evaluate_writes_tables_with_gains(tmp_path, net_path):
    photos = tmp_path / "eval"
    write_image(photos / "coffee.png", data.coffee()[:200, :240])
    write_image(photos / "chelsea.png", data.chelsea()[:180, :200])
    evaluate_main(["--eval-dir", str(photos), "--cache", str(tmp_path / "cache"), "--presets", "medium", "severe",
                   "--method", "degraded input=none", "--method", "unsharp=unsharp", "--method", f"net={net_path}",
                   "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "eval.csv")
    assert len(table) == 6 and set(table.preset) == {"medium", "severe"}
    base = table[table.method == "degraded input"].set_index("preset")
    assert (base["ΔPSNR"] == 0).all()
    assert (base.psnr["medium"] > base.psnr["severe"])
    net = table[table.method == "net"].iloc[0]
    assert net.params > 40_000 and 4 < net["GFLOP/720p"] < 6
    per_image = pd.read_csv(tmp_path / "out" / "eval_per_image.csv")
    assert len(per_image) == 2 * 3 * 2
    assert (tmp_path / "cache" / "medium" / "coffee.png").exists()  # degraded pairs are cached
    assert "| preset" in (tmp_path / "out" / "eval.md").read_text()
