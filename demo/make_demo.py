"""Make the demo images from photos bundled with scikit-image (public domain / CC0), degraded by kd presets.

    python demo/make_demo.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skimage import data  # noqa: E402

from kd.imagefile import write  # noqa: E402
from kd.degrade import degrade  # noqa: E402

HERE = Path(__file__).resolve().parent
PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}
DEGRADED = {"astronaut": "medium", "coffee": "severe", "chelsea": "mild"}

if __name__ == "__main__":
    for name, load in PHOTOS.items():
        clean = load()
        write(HERE / "clean" / f"{name}.png", clean)
        write(HERE / "degraded" / f"{name}_{DEGRADED[name]}.png", degrade(clean, DEGRADED[name]))
    print("wrote", sorted(str(p.relative_to(HERE)) for p in HERE.glob("*/*.png")))
