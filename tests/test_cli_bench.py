"""kd.bench runs every runtime on any checkpoint and reports precision and per-row memory (timings are not asserted)."""
import pandas as pd
import pytest

from kd.bench import main
from kd.runtime import available_backends, runner


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPKD_CACHE", str(tmp_path / "cache"))  # rows run in fresh processes, which read this
    monkeypatch.setattr("kd.registry.CACHE_DIR", tmp_path / "cache")
    runner.cache_clear()


def test_bench_rows_for_any_checkpoint(net_path, tmp_path, capsys):
    main(["--sizes", "540", "--repeats", "1", "--models", net_path, "--out", str(tmp_path / "b")])
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "b" / "bench.md").read_text().startswith("Machine: ")
    table = pd.read_json(tmp_path / "b" / "bench.jsonl", lines=True)
    assert "CPUs" in table.machine[0]
    backends = set(table.backend)
    assert {"torch", "torch channels_last", "opencv"} <= backends
    assert {b for b in available_backends() if b != "torch"} <= backends
    assert any(b.startswith("kd.sharpen (auto → ") for b in backends)
    assert set(table.precision) <= {"f32", "bf16", "f16", "u8", "int8 + f32", "int8 + bf16"}
    assert (table.ms > 0).all() and (table.peak_mb >= 0).all()
    net_rows = table[table.backend.isin(["torch", "onnx", "openvino"])]
    assert (net_rows.peak_mb > 1).all()  # each row's own process: its frames alone are 6 MB (960×540 float)
