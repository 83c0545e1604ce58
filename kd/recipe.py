"""A training run as a file: ``python -m kd.train --recipe recipes/NAME.toml`` takes its flags from TOML.

Each key is one of kd.train's long flags without the dashes (``lr = 1.5e-4``, ``stream_aware = true``,
``model_config = {arch = "student", width = 16}``; ``-`` or ``_`` both). Flags given on the command line override
the file, so a recipe can be rerun elsewhere with another ``--out`` or ``--minutes``. Strict, like a study file: an
unknown key, a wrong type or a value outside a flag's choices is refused with the file and the line.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kd.tomlfile import line_of, read_toml


class RecipeError(ValueError):
    """A problem in a recipe file; the message names the file (and the line when known)."""


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "recipe")}


def _check(action: argparse.Action, value):
    """The value as argparse would hold it; TypeError saying what the flag takes when it does not fit."""
    def fits(ok: bool, what: str):
        if not ok:
            raise TypeError(what)
        return value

    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # --stream-aware, --amp/--no-amp
        return fits(isinstance(value, bool), "true or false")
    fits(not isinstance(value, bool), "a number or a text, not true/false")
    if action.type is int:
        return fits(isinstance(value, int), "a whole number")
    if action.type is float:
        return float(fits(isinstance(value, (int, float)), "a number"))
    if isinstance(value, dict):  # a TOML table: what a JSON flag (--model-config) parses to
        return fits(action.dest == "model_config", "not a table")
    fits(isinstance(value, str), "a text")
    if action.choices is not None:
        fits(value in action.choices, f"one of {sorted(action.choices)}")
    return value  # argparse applies the flag's type (Path, JSON) to text defaults when it parses


def load(path: Path | str, parser: argparse.ArgumentParser) -> dict:
    """{flag dest: value} from a recipe file, each checked against ``parser``'s flag."""
    path = Path(path)
    text, raw = read_toml(path, "recipe", RecipeError)
    flags, values = _flags(parser), {}
    for key, value in raw.items():
        dest = key.replace("-", "_")
        if dest not in flags:
            raise RecipeError(f"{path}{line_of(text, key)}: unknown key {key!r}: "
                              f"kd.train has no --{dest.replace('_', '-')} (python -m kd.train --help)")
        try:
            checked = _check(flags[dest], value)
        except TypeError as e:
            raise RecipeError(f"{path}{line_of(text, key)}: {key} must be {e}, got {value!r}") from None
        values[dest] = checked
    return values


def apply(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """If ``argv`` names a ``--recipe``, make its values the parser's defaults (flags still override them)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.recipe is None:
        return
    try:
        values = load(known.recipe, parser)
    except RecipeError as e:
        parser.error(str(e))
    for action in parser._actions:
        if action.dest in values:
            action.required = False  # e.g. --out, when the recipe names it
    parser.set_defaults(**values)
