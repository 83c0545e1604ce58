"""A study definition, read from TOML and checked strictly before anything is rendered or stored.

See ``study/example.toml``. Every error names the file and, where it can be found, the line: an unknown key anywhere
(a misspelt ``preest``), a wrong type or an out-of-range value is refused, never silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kd.degrade import PRESETS
from kd.tomlfile import line_of, read_toml
from study.designs import DEFAULT, DESIGNS

KINDS = ("reference", "degraded", "unsharp", "model")
SKIMAGE_PREFIX = "skimage:"
# conditions every study has besides its own: stimuli.py renders them, the schedule, votes and report tell them apart
GOLD = "gold-severe"  # a hidden condition used only in gold trials
ANCHOR_BEST, ANCHOR_WORST = "anchor-best", "anchor-worst"  # rendered from training photos only


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
    design: str = DEFAULT
    votes_per_pair: int = 8
    trials_per_rater: int = 20
    gold_share: float = 0.1
    repeat_share: float = 0.1
    repeat_gap: int = 3
    crop: int = 384
    seed: int = 0
    gold_preset: str = "severe"
    allow_ties: bool = True
    min_response_ms: int = 800
    assignment_timeout_s: int = 900
    open_enrolment: bool = True
    contrasts: tuple[tuple[str, str], ...] = ()
    training: tuple[SourceImage, ...] = field(default=())
    training_trials: int = 0

    @property
    def reference(self) -> Condition | None:
        return next((c for c in self.conditions if c.kind == "reference"), None)


# key: (type(s), default, check or None, description for messages)
SETTINGS = {
    "name": (str, None, None, "a text"),
    "design": (str, DEFAULT, lambda v: v in DESIGNS, lambda: f"one of {', '.join(DESIGNS)}"),  # study/designs.py
    "seed": (int, 0, lambda v: 0 <= v <= 2**31, "a whole number in [0, 2^31]"),
    "votes_per_pair": (int, 8, lambda v: 1 <= v <= 100_000, "a whole number in [1, 100000]"),
    "trials_per_rater": (int, 20, lambda v: 1 <= v <= 1000, "a whole number in [1, 1000]"),
    "gold_share": ((int, float), 0.1, lambda v: 0 <= v <= 0.5, "a number in [0, 0.5]"),
    "repeat_share": ((int, float), 0.1, lambda v: 0 <= v <= 0.5, "a number in [0, 0.5]"),
    "repeat_gap": (int, 3, lambda v: 0 <= v <= 100, "a whole number in [0, 100]"),
    "crop": (int, 384, lambda v: 0 <= v <= 4096, "a whole number in [0, 4096]"),
    "gold_preset": (str, "severe", lambda v: v in PRESETS, f"one of {sorted(PRESETS)}"),
    "allow_ties": (bool, True, None, "true or false"),
    "min_response_ms": (int, 800, lambda v: 0 <= v <= 60_000, "a whole number of milliseconds in [0, 60000]"),
    "assignment_timeout_s": (int, 900, lambda v: 10 <= v <= 86_400, "a whole number of seconds in [10, 86400]"),
    "open_enrolment": (bool, True, None, "true or false"),
    "training_trials": (int, 2, lambda v: 0 <= v <= 10, "a whole number in [0, 10]"),
    "contrasts": (list, [], None, 'a list of condition-name pairs, e.g. [["student", "teacher"]]'),
}
TABLES = {"images": ("name", "path"), "training": ("name", "path"), "conditions": ("name", "kind", "preset", "model")}


def load_config(path: Path | str) -> StudyConfig:
    path = Path(path)
    text, raw = read_toml(path, "study file", ConfigError)

    def fail(msg: str, key: str = "", table: str | None = None, index: int = 0):
        raise ConfigError(f"{path}{line_of(text, key, table, index) if key or table else ''}: {msg}")

    def typed(value, types, key, what, table=None, index=0):
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)))
        if not ok:
            where = f"{table}[{index}].{key}" if table else key
            fail(f"{where} must be {what}, got {type(value).__name__} {value!r}", key, table, index)
        return value

    for key in raw:
        if key not in SETTINGS and key not in TABLES:
            fail(f"unknown setting {key!r} (known: {', '.join(sorted([*SETTINGS, *TABLES]))})", key)
    settings = {}
    for key, (types, default, check, what) in SETTINGS.items():
        if key not in raw:
            continue
        what = what() if callable(what) else what
        v = typed(raw[key], types, key, what)
        if check and not check(v):
            fail(f"{key} must be {what}, got {v!r}", key)
        settings[key] = v

    def entries(table: str) -> list[dict]:
        items = raw.get(table, [])
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            fail(f"{table} must be a list of [[{table}]] tables", table)
        for i, item in enumerate(items):
            for key, value in item.items():
                if key not in TABLES[table]:
                    fail(f"[[{table}]] #{i + 1}: unknown key {key!r} (known: {', '.join(TABLES[table])})", key, table, i)
                typed(value, str, key, "a text", table, i)
            for key in ("name",) + (("path",) if table != "conditions" else ("kind",)):
                if not item.get(key, "").strip():
                    fail(f"[[{table}]] #{i + 1} needs a {key}", "", table, i)
        return items

    def source(table: str, i: int, im: dict) -> SourceImage:
        p = im["path"]
        if p.startswith(SKIMAGE_PREFIX):
            from skimage import data

            if not callable(getattr(data, p[len(SKIMAGE_PREFIX):], None)):
                fail(f"image {im['name']!r}: scikit-image has no photo {p!r}", "path", table, i)
            return SourceImage(im["name"], p)
        resolved = (path.parent / p).resolve()
        if not resolved.is_file():
            fail(f"image {im['name']!r}: file not found: {resolved}", "path", table, i)
        return SourceImage(im["name"], str(resolved))

    images = tuple(source("images", i, im) for i, im in enumerate(entries("images")))
    training = tuple(source("training", i, im) for i, im in enumerate(entries("training")))
    if not images:
        fail("no [[images]] given")
    names = [im.name for im in images + training]
    if len(set(names)) != len(names):
        fail("image names must be unique across [[images]] and [[training]]")

    conditions = []
    for i, c in enumerate(entries("conditions")):
        name, kind, preset, model = c["name"], c["kind"], c.get("preset", "medium"), c.get("model", "")
        if kind not in KINDS:
            fail(f"conditions[{i}] ({name!r}): kind must be one of {KINDS}, got {kind!r}", "kind", "conditions", i)
        if preset not in PRESETS:
            fail(f"condition {name!r}: unknown preset {preset!r} (choose from {sorted(PRESETS)})", "preset", "conditions", i)
        if kind == "model":
            from kd.registry import weights_path

            try:
                if not weights_path(model).exists():
                    fail(f"condition {name!r}: no weights for model {model!r}", "model", "conditions", i)
            except ValueError as e:
                fail(f"condition {name!r}: {e}", "model", "conditions", i)
        elif model:
            fail(f"condition {name!r}: 'model' only goes with kind = \"model\"", "model", "conditions", i)
        conditions.append(Condition(name, kind, preset, model))
    if len(conditions) < 2:
        fail("a study needs at least two [[conditions]]")
    if len({c.name for c in conditions}) != len(conditions):
        fail("condition names must be unique")
    if sum(c.kind == "reference" for c in conditions) > 1:
        fail("at most one condition can be the hidden reference")
    design = settings.get("design", DEFAULT)
    if DESIGNS[design].needs_reference and not any(c.kind == "reference" for c in conditions):
        fail(f"design {design!r} needs a condition with kind = \"reference\"", "design")

    if settings.get("training_trials") and not training:
        fail("training_trials needs [[training]] photos to practise on", "training_trials")
    settings["training_trials"] = settings.get("training_trials", 2) if training else 0
    known = {c.name for c in conditions}
    contrasts = []
    for pair in settings.pop("contrasts", []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            fail(f"contrasts must be pairs of condition names, got {pair!r}", "contrasts")
        if not set(pair) <= known or pair[0] == pair[1]:
            fail(f"contrast {pair!r}: needs two different conditions of this study ({', '.join(sorted(known))})",
                 "contrasts")
        contrasts.append(tuple(pair))
    settings["gold_share"] = float(settings.get("gold_share", 0.1))
    settings["repeat_share"] = float(settings.get("repeat_share", 0.1))
    return StudyConfig(path=path, name=str(settings.pop("name", path.stem)), images=images, training=training,
                       conditions=tuple(conditions), contrasts=tuple(contrasts), **settings)
