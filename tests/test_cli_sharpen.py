"""``python -m kd.sharpen -i ... -o ...`` as a user runs it, and the console scripts that pip installs."""
import subprocess
import sys
import tomllib
from importlib import import_module

import cv2
import numpy as np
import pytest

from app_server import ROOT
from kd.imagefile import read, write
from kd.sharpen import main


def test_folder_in_folder_out(tmp_path, odd_photo, net_path, capsys):
    src = tmp_path / "in"
    write(src / "a.png", odd_photo)
    write(src / "b.jpg", odd_photo)
    write(src / "deep.png", odd_photo.astype(np.uint16) * 257)
    (src / "notes.txt").write_text("not an image, not picked up")
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--model", net_path]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_out.png", "b_out.jpg", "deep_out.png"]
    a, _ = read(tmp_path / "out/a_out.png")
    assert a.shape == odd_photo.shape and np.abs(a.astype(int) - odd_photo).mean() > 0.5
    deep, _ = read(tmp_path / "out/deep_out.png")
    assert deep.dtype == np.uint16 and np.abs(deep.astype(int) // 257 - a).max() <= 1
    assert "wrote 3 images" in capsys.readouterr().out


def test_one_file_to_a_named_file_with_options(tmp_path, odd_photo, net_path):
    write(tmp_path / "frame.png", odd_photo)
    assert main(["-i", str(tmp_path / "frame.png"), "-o", str(tmp_path / "sharp.webp"), "--model", net_path,
                 "--backend", "torch", "--tile", "64"]) == 0
    assert cv2.imread(str(tmp_path / "sharp.webp")).shape == odd_photo.shape


def test_a_broken_file_is_skipped_and_reported(tmp_path, odd_photo, capsys):
    write(tmp_path / "in/good.png", odd_photo)
    (tmp_path / "in/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "unsharp", "--suffix", ""]) == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    assert "skipped" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["-i", "missing.png"], "no such file"),
    (["-i", "empty"], "no images"),
    (["-i", "in.png", "out.png"], "unrecognized arguments"),  # the old positional habit no longer passes silently
    (["-i", "{png}", "--model", "gigantic"], "unknown model"),
    (["-i", "{png}", "-o", "{png}", "--suffix", ""], "overwrite"),
])
def test_bad_command_lines_say_why(tmp_path, monkeypatch, capsys, odd_photo, args, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "p.png", odd_photo)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        main([x.format(png=str(tmp_path / "p.png")) for x in args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_module_runs_from_the_shell(tmp_path, odd_photo):
    write(tmp_path / "f.png", odd_photo)
    done = subprocess.run([sys.executable, "-m", "kd.sharpen", "-i", str(tmp_path / "f.png"), "-o", str(tmp_path / "o"),
                           "--model", "unsharp"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "o/f_out.png")[0].shape == odd_photo.shape


def test_console_scripts_point_at_real_functions():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"sharpkd", "sharpkd-app", "sharpkd-study"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(import_module(module), func)), name


def test_image_files_keep_depth_and_big_ones_are_checked_first(tmp_path, photo):
    from PIL import Image

    deep = photo[:40, :30].astype(np.uint16) * 257
    write(tmp_path / "deep.png", deep)
    back, notice = read(tmp_path / "deep.png")
    assert back.dtype == np.uint16 and np.array_equal(back, deep) and notice == ""
    big = cv2.resize(photo, (3000, 2000))
    cv2.imwrite(str(tmp_path / "big.jpg"), big)
    small, notice = read(tmp_path / "big.jpg", max_pixels=300_000)  # decoded at a reduced scale, then fitted
    assert small.shape[0] * small.shape[1] <= 300_000 and "downscaled" in notice
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match="too large"):
        read(tmp_path / "bomb.png", max_pixels=300_000, decode_limit=50_000_000)


def test_stream_flag_tells_a_stream_aware_model(tmp_path, odd_photo, aware_net_path):
    import kd

    write(tmp_path / "frame.png", odd_photo)
    assert main(["-i", str(tmp_path / "frame.png"), "-o", str(tmp_path / "told.png"), "--model", aware_net_path,
                 "--backend", "torch", "--stream", "severe"]) == 0
    told, _ = read(tmp_path / "told.png")
    assert np.array_equal(told, kd.sharpen(odd_photo, model=aware_net_path, backend="torch", stream="severe"))
    assert not np.array_equal(told, kd.sharpen(odd_photo, model=aware_net_path, backend="torch"))
