"""Export a network to ONNX or OpenVINO IR (fp32 or INT8) for fast inference outside PyTorch.

    python -m kd.export --model student --format onnx           # writes exports/student.onnx
    python -m kd.export --model student --format openvino       # writes exports/student.xml (+ .bin)
    python -m kd.export --model student --format openvino-int8  # exports/student-int8.xml, NNCF post-training
    python -m kd.export --model student --format onnx-web       # exports/student-web.onnx: for the browser

All take any frame size whose sides are multiples of the model's unshuffle factor (``kd.sharpen`` pads to that).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from kd.registry import load, multiple


def export_onnx(model: torch.nn.Module, path: Path | str, opset: int = 17) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = multiple(model)
    dummy = torch.rand(1, 3, 8 * m, 12 * m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (dummy,), str(path), input_names=["frame"], output_names=["restored"],
                          dynamic_axes={"frame": {0: "batch", 2: "height", 3: "width"},
                                        "restored": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=opset, dynamo=False)
    return path


class BrowserFrame(torch.nn.Module):
    """A stream-aware net as a browser runs it: a canvas's RGBA bytes and the stream vector in, RGBA bytes out.

    Everything ``kd.sharpen`` does around the net happens in the graph, so a web page needs no pixel loops and no
    knowledge of the net: RGBA → float RGB, reflection padding to the model's multiple, the net told its stream,
    cropping back, ``(clip(y) * 255 + 0.5)`` floored to bytes, alpha 255. Why the stream is an input rather than one
    folded file per stream: a call's quantiser changes from second to second (the vector is continuous), so the
    FiLM and expert mixing run in the graph on the 1×STREAM_FEATURES vector and the convs take the mixed weights.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        from kd.models import stream_aware

        if not stream_aware(model):
            raise ValueError("onnx-web exports a stream-aware net (told its stream); this one is blind")
        self.model = model.eval()
        self.multiple = multiple(model)

    def forward(self, rgba: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
        h, w = rgba.shape[0], rgba.shape[1]
        x = rgba.permute(2, 0, 1)[None, :3].float() / 255  # planes first: slicing them is a plain copy
        m = self.multiple
        x = torch.nn.functional.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="reflect")
        y = self.model(x, stream=stream)[0, :, :h, :w].clamp(0, 1)
        rgb = torch.floor(y * 255 + 0.5).permute(1, 2, 0)
        return torch.cat([rgb, torch.full_like(rgb[:, :, :1], 255)], dim=2).to(torch.uint8)


def export_onnx_web(model: torch.nn.Module, path: Path | str, opset: int = 17) -> Path:
    """ONNX of ``BrowserFrame(model)``: inputs ``rgba`` (H×W×4 uint8, any size from 16 px up, as a canvas's
    ``getImageData`` gives it) and ``stream`` (1×F float32, ``kd.degrade.stream_condition``); output ``sharpened``
    (H×W×4 uint8). One frame per call: the experts' per-frame kernels make the batch part of the conv's grouping."""
    from kd.degrade import STREAM_FEATURES

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = multiple(model)
    rgba, stream = torch.randint(0, 256, (3 * m - 3, 5 * m - 1, 4), dtype=torch.uint8), torch.zeros(1, STREAM_FEATURES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(BrowserFrame(model), (rgba, stream), str(path), input_names=["rgba", "stream"],
                          output_names=["sharpened"],
                          dynamic_axes={"rgba": {0: "height", 1: "width"}, "sharpened": {0: "height", 1: "width"}},
                          opset_version=opset, dynamo=False)
    return splits_as_slices(path)


def splits_as_slices(path: Path) -> Path:
    """Rewrite every Split node of an ONNX file as one Slice per output, in place.

    Why: a WebGPU shader binds each input and output as a storage buffer, and GPUs allow as few as 8 per shader stage
    (WebGPU's default limit; SwiftShader allows 10), while the FiLM's Split has 10 outputs: ONNX Runtime Web's WebGPU
    backend refused to run it ("Too many storage buffers in shader. Current: 11, Max is 10"). The splits cut the
    1×F stream's small vectors, so slicing them instead costs nothing.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
               if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    nodes = []
    for node in graph.node:
        if node.op_type != "Split":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(node.input) < 2 or node.input[1] not in values:
            raise ValueError(f"Split {node.name} has no constant sizes: cannot rewrite it as slices")
        sizes, axis, start = [int(v) for v in values[node.input[1]]], int(attrs.get("axis", 0)), 0
        for i, (out, size) in enumerate(zip(node.output, sizes)):
            names = [f"{node.name}_slice{i}_{k}" for k in ("starts", "ends", "axes")]
            for name, v in zip(names, (start, start + size, axis)):
                graph.initializer.append(numpy_helper.from_array(np.array([v], np.int64), name))
            nodes.append(helper.make_node("Slice", [node.input[0], *names], [out], name=f"{node.name}_slice{i}"))
            start += size
    used = {name for n in nodes for name in n.input}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]  # the splits' sizes
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _openvino_model(model: torch.nn.Module):
    import openvino as ov

    m = multiple(model)
    return ov.convert_model(model.eval(), example_input=torch.rand(1, 3, 8 * m, 12 * m),
                            input=[ov.PartialShape([-1, 3, -1, -1])])


def export_openvino(model: torch.nn.Module, path: Path | str) -> Path:
    """OpenVINO IR converted straight from PyTorch, with dynamic batch and frame size."""
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(_openvino_model(model), str(path), compress_to_fp16=False)
    return path


# scikit-image photos that are not in the evaluation set (kd.data.SKIMAGE_EVAL): calibration never sees test data
CALIBRATION_PHOTOS = ("hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "moon.png", "coins.png",
                      "gravel.png", "brick.png", "page.png", "grass.png")


def calibration_frames(size: int = 256, multiple: int = 1, presets=("mild", "medium", "severe")) -> list[np.ndarray]:
    """Real degraded frames (1x3xHxW float32) for INT8 calibration: photos bundled with scikit-image, cut to
    ``size`` px and degraded by each preset, since activation ranges depend on what the net really sees."""
    from skimage import data as skdata

    from kd.degrade import degrade
    from kd.imagefile import read, rgb

    root = Path(skdata.__file__).parent
    frames = []
    for name in CALIBRATION_PHOTOS:
        img = rgb(read(root / name)[0])
        h, w = (min(side, size) // multiple * multiple for side in img.shape[:2])
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        crop = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
        for preset in presets:
            d = degrade(crop, preset).astype(np.float32) / 255
            frames.append(np.ascontiguousarray(d.transpose(2, 0, 1))[None])
    return frames


def export_openvino_int8(model: torch.nn.Module, path: Path | str) -> Path:
    """OpenVINO IR with INT8 weights and activations, by NNCF post-training quantization on real degraded frames.

    The global skip's add stays in float (its inputs are not quantized for it): measured on the scikit-image eval
    photos at ``medium``, that halves the loss against fp32 (−0.046 → −0.028 dB). So do the convs of the student's
    context branch (they run on 1/256 of the pixels, so float costs nothing there): on the 25 evaluation photos,
    told, the shipped student's INT8 loss against fp32 fell from −0.107 to −0.094 dB at ``medium`` and from −0.180 to
    −0.142 at ``severe``.
    """
    import nncf
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    ov_model = _openvino_model(model)
    frames = calibration_frames(multiple=multiple(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_float = nncf.IgnoredScope(patterns=[r".*aten::add/Add$", r".*context.*Convolution$"], validate=False)
        q = nncf.quantize(ov_model, nncf.Dataset(frames), subset_size=len(frames), preset=nncf.QuantizationPreset.MIXED,
                          ignored_scope=in_float)
    ov.save_model(q, str(path), compress_to_fp16=False)
    return path


VERSION = 3  # part of the cache key of exported files: bump it when an exporter changes what it writes
EXPORTERS = {"onnx": (export_onnx, ".onnx"), "openvino": (export_openvino, ".xml"),
             "openvino-int8": (export_openvino_int8, "-int8.xml"), "onnx-web": (export_onnx_web, "-web.onnx")}


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
