"""A study definition, read from TOML and checked before anything is rendered or stored.

See ``study/example.toml``. Errors name the file and, where it can be found, the line.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kd.degrade import PRESETS

KINDS = ("reference", "degraded", "unsharp", "model")
SKIMAGE_PREFIX = "skimage:"


class ConfigError(ValueError):
    """A problem in a study file; the message names the file (and line when known)."""


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str
    preset: str = "medium"
    model: str = ""

    def method(self) -> str:
        """What kd.sharpen is called with on the degraded image (none for the reference and the degraded input)."""
        return {"unsharp": "unsharp", "model": self.model}.get(self.kind, "none")


@dataclass(frozen=True)
class SourceImage:
    name: str
    path: str


@dataclass(frozen=True)
class StudyConfig:
    path: Path
    name: str
    images: tuple[SourceImage, ...]
    conditions: tuple[Condition, ...]
    votes_per_pair: int = 8
    trials_per_rater: int = 20
    gold_share: float = 0.1
    repeat_share: float = 0.1
    crop: int = 384
    seed: int = 0
    gold_preset: str = "severe"
    training: tuple[str, ...] = field(default=())

    @property
    def reference(self) -> Condition | None:
        return next((c for c in self.conditions if c.kind == "reference"), None)


def _line_of(text: str, needle: str) -> str:
    """':N' for the first line that holds ``needle`` (a key, or a quoted or bare value), else ''."""
    for i, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if needle in code or needle.strip('"') in code.replace("'", "").replace('"', "").split("=")[-1].split():
            return f":{i}"
    return ""


def load_config(path: Path | str) -> StudyConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such study file")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML: {e}") from None

    def fail(msg: str, needle: str = "") -> None:
        raise ConfigError(f"{path}{_line_of(text, needle) if needle else ''}: {msg}")

    known = {"name", "images", "conditions", "votes_per_pair", "trials_per_rater", "gold_share", "repeat_share",
             "crop", "seed", "gold_preset"}
    for key in raw:
        if key not in known:
            fail(f"unknown setting {key!r} (known: {', '.join(sorted(known))})", key)
    def number(key, default, lo, hi, kind=int):
        v = raw.get(key, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi or (kind is int and v != int(v)):
            fail(f"{key} must be {'a whole number' if kind is int else 'a number'} in [{lo}, {hi}], got {v!r}", key)
        return kind(v)

    gold_preset = raw.get("gold_preset", "severe")
    if gold_preset not in PRESETS:
        fail(f"gold_preset must be one of {sorted(PRESETS)}", "gold_preset")
    settings = dict(votes_per_pair=number("votes_per_pair", 8, 1, 10_000),
                    trials_per_rater=number("trials_per_rater", 20, 1, 1000),
                    gold_share=number("gold_share", 0.1, 0.0, 0.5, float),
                    repeat_share=number("repeat_share", 0.1, 0.0, 0.5, float),
                    crop=number("crop", 384, 0, 4096), seed=number("seed", 0, 0, 2**31), gold_preset=gold_preset)
    images = []
    for i, im in enumerate(raw.get("images", [])):
        if "name" not in im or "path" not in im:
            fail(f"images[{i}] needs a name and a path", "[[images]]")
        p = im["path"]
        if p.startswith(SKIMAGE_PREFIX):
            from skimage import data

            if not hasattr(data, p[len(SKIMAGE_PREFIX):]):
                fail(f"image {im['name']!r}: scikit-image has no photo {p!r}", p)
        else:
            resolved = (path.parent / p).resolve()
            if not resolved.exists():
                fail(f"image {im['name']!r}: file not found: {resolved}", p)
            p = str(resolved)
        images.append(SourceImage(im["name"], p))
    if not images:
        fail("no [[images]] given")
    if len({im.name for im in images}) != len(images):
        fail("image names must be unique")

    conditions = []
    for i, c in enumerate(raw.get("conditions", [])):
        name, kind = c.get("name"), c.get("kind")
        if not name or kind not in KINDS:
            fail(f"conditions[{i}] ({name!r}): kind must be one of {KINDS}, got {kind!r}", str(kind or name or ""))
        preset = c.get("preset", "medium")
        if preset not in PRESETS:
            fail(f"condition {name!r}: unknown preset {preset!r} (choose from {sorted(PRESETS)})", f'"{preset}"')
        if kind == "model":
            from kd.runtime import weights_path

            try:
                if not weights_path(c.get("model", "")).exists():
                    fail(f"condition {name!r}: no weights for model {c.get('model')!r}", f'"{name}"')
            except ValueError as e:
                fail(f"condition {name!r}: {e}", f'"{name}"')
        conditions.append(Condition(name, kind, preset, c.get("model", "")))
    if len(conditions) < 2:
        fail("a study needs at least two [[conditions]]")
    if len({c.name for c in conditions}) != len(conditions):
        fail("condition names must be unique")
    if sum(c.kind == "reference" for c in conditions) > 1:
        fail("at most one condition can be the hidden reference")

    return StudyConfig(path=path, name=str(raw.get("name", path.stem)), images=tuple(images),
                       conditions=tuple(conditions), **settings)
