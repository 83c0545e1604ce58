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
    md = (tmp_path / "b" / "bench.md").read_text()
    assert md.startswith("Machine: ")
    table = pd.read_json(tmp_path / "b" / "bench.jsonl", lines=True)
    assert "CPUs" in table.machine[0]
    backends = set(table.backend)
    assert {"torch", "torch channels_last", "opencv"} <= backends
    assert {b for b in available_backends() if b != "torch"} <= backends
    assert any(b.startswith("kd.sharpen (auto → ") for b in backends)
    # what stream="auto" adds: an estimate per frame and one per 15 frames, each a share of the student's time
    from kd.bench import ESTIMATE_ROWS

    estimates = table.set_index("backend").loc[list(ESTIMATE_ROWS), "ms"]
    assert estimates.iloc[1] < estimates.iloc[0] / 5  # held between readings: 1 estimate per 15 frames
    assert f"960×540: of the student's kd.sharpen time, {ESTIMATE_ROWS[0]} " in md
    assert set(table.precision) <= {"f32", "bf16", "f16", "u8", "int8 + f32", "int8 + bf16"}
    assert (table.ms > 0).all() and (table.peak_mb >= 0).all()
    net_rows = table[table.backend.isin(["torch", "onnx", "openvino"])]
    assert (net_rows.peak_mb > 1).all()  # each row's own process: its frames alone are 6 MB (960×540 float)


def test_bench_times_the_plain_net_a_stream_aware_checkpoint_runs_as(tmp_path):
    """A receiver (or anyone not telling the stream) runs the FiLM and experts folded into plain convs: every row,
    torch channels_last included, times and sizes that net, not the training-time one with its extra kernels."""
    import torch

    from kd import checkpoint
    from kd.bench import row
    from kd.models import CONFIGS, build, count_params, gflops

    torch.manual_seed(0)
    net = build(CONFIGS["student"] | {"stream": True, "experts": 4})
    path = tmp_path / "experts.pt"
    checkpoint.save(path, net)
    plain, cost = count_params(build("student")), gflops(build("student"), 540, 960)
    for backend in ("torch", "torch channels_last", "kd.sharpen torch"):
        r = row(str(path), backend, 540, repeats=1, warmup=0)
        assert r["params"] == plain and abs(r["gflop"] - cost) < 1e-6, (backend, r["params"], r["gflop"])
