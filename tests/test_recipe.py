"""``kd.train --recipe``: a run's flags in a file, strict, overridden by the command line; the shipped recipes."""
from pathlib import Path

import pytest
import torch

from app_server import ROOT
from kd.models import CONFIGS, build, config_of
from kd.train import parse_args

SHIP_CHOSEN = ("coring", "told_coring")  # picked by kd.ship on validation crops after training, not by a recipe


def architecture(a) -> dict:
    """The net a parsed run trains, as kd.train builds it."""
    config = dict(CONFIGS[a.model] if a.model_config is None else a.model_config)
    net = build(config | {"stream": True} if a.stream_aware else config)
    return {k: v for k, v in config_of(net).items() if k not in SHIP_CHOSEN}


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_recipes_rebuild_the_shipped_architectures(name):
    a = parse_args(["--recipe", str(ROOT / f"recipes/{name}.toml")])
    shipped = torch.load(ROOT / f"weights/{name}.pt", map_location="cpu", weights_only=False)["config"]
    assert architecture(a) == {k: v for k, v in shipped.items() if k not in SHIP_CHOSEN}
    assert a.init.exists() and isinstance(a.out, Path)  # the weights it starts from are in git


def test_command_line_flags_override_the_recipe():
    a = parse_args(["--recipe", str(ROOT / "recipes/student.toml"), "--lr", "1.2e-4", "--out", "runs/x.pt", "--seed", "6"])
    assert (a.lr, a.out, a.seed, a.minutes, a.no_kd) == (1.2e-4, Path("runs/x.pt"), 6, 125.0, True)
    assert parse_args(["--out", "o.pt"]).lr == 5e-4  # without a recipe, the defaults


def recipe_error(tmp_path, capsys, text: str) -> str:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(SystemExit):
        parse_args(["--recipe", str(path)])
    return capsys.readouterr().err


def test_a_wrong_recipe_names_its_file_and_line(tmp_path, capsys):
    said = recipe_error(tmp_path, capsys, 'out = "runs/x.pt"\n# a comment\nlearning_rate = 1e-3\n')
    assert f"{tmp_path / 'r.toml'}:3: unknown key 'learning_rate'" in said
    assert "r.toml:2: batch must be a whole number, got 1.5" in recipe_error(tmp_path, capsys, 'out = "x.pt"\nbatch = 1.5\n')
    assert "r.toml:1: stream_aware must be true or false" in recipe_error(tmp_path, capsys, 'stream_aware = "yes"\n')
    assert "pixel_loss must be one of ['l1', 'mse']" in recipe_error(tmp_path, capsys, 'out = "x.pt"\npixel_loss = "l3"\n')
    assert "malformed TOML" in recipe_error(tmp_path, capsys, "out = \n")
    assert "required: --out" in recipe_error(tmp_path, capsys, "lr = 1e-3\n")  # no out in the file or the flags
    with pytest.raises(SystemExit):
        parse_args(["--recipe", str(tmp_path / "missing.toml"), "--out", "x.pt"])
    assert "missing.toml: no such recipe" in capsys.readouterr().err
