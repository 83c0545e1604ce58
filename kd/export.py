"""Export a network to ONNX or OpenVINO IR for fast inference outside PyTorch.

    python -m kd.export --model student --format onnx        # writes exports/student.onnx
    python -m kd.export --model student --format openvino    # writes exports/student.xml (+ .bin)

Both take any frame size whose sides are multiples of the model's unshuffle factor (``kd.sharpen`` pads to that).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from kd.runtime import load


def export_onnx(model: torch.nn.Module, path: Path | str, opset: int = 17) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = getattr(model, "multiple", 1)
    dummy = torch.rand(1, 3, 8 * m, 12 * m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (dummy,), str(path), input_names=["frame"], output_names=["restored"],
                          dynamic_axes={"frame": {0: "batch", 2: "height", 3: "width"},
                                        "restored": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=opset, dynamo=False)
    return path


def export_openvino(model: torch.nn.Module, path: Path | str) -> Path:
    """OpenVINO IR converted straight from PyTorch, with dynamic batch and frame size."""
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    m = getattr(model, "multiple", 1)
    ov_model = ov.convert_model(model.eval(), example_input=torch.rand(1, 3, 8 * m, 12 * m),
                                input=[ov.PartialShape([-1, 3, -1, -1])])
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path


EXPORTERS = {"onnx": (export_onnx, ".onnx"), "openvino": (export_openvino, ".xml")}


def export(name: str, fmt: str, out: Path | str) -> Path:
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(EXPORTERS)}")
    fn, _ = EXPORTERS[fmt]
    return fn(load(name), out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.export", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="student", help="student, teacher, seed or a checkpoint path")
    ap.add_argument("--format", default="onnx", choices=sorted(EXPORTERS))
    ap.add_argument("--out", type=Path, default=None, help="output file (default exports/MODEL.onnx|.xml)")
    a = ap.parse_args(argv)
    out = a.out or Path("exports") / f"{Path(a.model).stem}{EXPORTERS[a.format][1]}"
    print(f"wrote {export(a.model, a.format, out)}")


if __name__ == "__main__":
    main()
