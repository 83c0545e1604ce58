"""kd.bench runs every runtime on any checkpoint and reports precision and per-row memory (timings are not asserted)."""
import math

from kd.bench import bench, main
from kd.runtime import available_backends, runner


def test_bench_rows_for_any_checkpoint(net_path, tmp_path, monkeypatch):
    monkeypatch.setattr("kd.registry.CACHE_DIR", tmp_path / "cache")
    runner.cache_clear()
    table = bench(sizes=(540,), repeats=1, slow_repeats=1, models=[net_path])
    backends = set(table.backend)
    assert {"torch", "torch channels_last", "opencv"} <= backends
    assert {b for b in available_backends() if b != "torch"} <= backends
    assert any(b.startswith("kd.sharpen (auto → ") for b in backends)
    assert set(table.precision) <= {"f32", "bf16", "f16", "u8", "int8 + f32", "int8 + bf16"}
    assert all(math.isnan(m) or m >= 0 for m in table.peak_mb)
    assert (table.ms > 0).all()


def test_results_go_to_the_asked_folder(net_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("kd.registry.CACHE_DIR", tmp_path / "cache")
    runner.cache_clear()
    main(["--sizes", "540", "--repeats", "1", "--models", net_path, "--out", str(tmp_path / "b")])
    text = (tmp_path / "b" / "bench.md").read_text()
    assert text.startswith("Machine: ") and "CPUs" in text and "precision" in text
    assert "wrote" in capsys.readouterr().out
