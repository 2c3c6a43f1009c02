"""Recipes as data (prodlab.recipes, prodlab.training.registry): --set overrides, JSON round trips, where runs write,
and what Ctrl-C leaves behind."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from prodlab import checkpoints, config, models, recipes
from prodlab.cli import build_parser, main
from prodlab.training import gan as gan_training
from prodlab.training import registry
from prodlab.training.gan import GANRecipe
from prodlab.training.vae import VAERecipe


def test_override_parses_each_field_type():
    r = recipes.override(GANRecipe(), ["epochs=2", "lr_g=1e-3", "betas=0.0,0.9", "train_limit=none", "loss=hinge"])
    assert (r.epochs, r.lr_g, r.betas, r.train_limit, r.loss) == (2, 1e-3, (0.0, 0.9), None, "hinge")
    assert recipes.override(r, ["train_limit=500"]).train_limit == 500
    assert recipes.override(GANRecipe(), []) == GANRecipe()  # no override, the same recipe


@pytest.mark.parametrize("assignment, message", [
    ("no_such_key=1", "no such key in GANRecipe; valid keys: epochs, batch_size"),
    ("epochs=abc", "--set epochs=abc: not a valid int"),
    ("betas=0.5", "needs 2 comma-separated values"),
    ("epochs", "expected key=value"),
])
def test_bad_overrides_name_the_valid_keys(assignment, message):
    with pytest.raises(recipes.RecipeError, match=message):
        recipes.override(GANRecipe(), [assignment])


def test_a_value_the_recipe_refuses_is_an_error():
    with pytest.raises(ValueError, match="loss must be one of"):
        recipes.override(GANRecipe(), ["loss=wasserstein"])


@pytest.mark.parametrize("name", list(registry.ENTRIES))
def test_every_named_recipe_survives_json(name):
    entry = registry.ENTRIES[name]
    for recipe in (entry.recipe, entry.quick):
        stored = json.loads(json.dumps(recipes.recipe_to_json(name, recipe)))  # tuples become lists on disk
        assert registry.recipe_of(name, {"recipe": stored}) == recipe


def test_recipe_of_another_type_is_refused():
    stored = recipes.recipe_to_json("vae", VAERecipe())
    with pytest.raises(recipes.RecipeError, match="expected GANRecipe"):
        recipes.recipe_from_json(stored, GANRecipe)


def test_every_registered_model_is_shipped_and_of_its_family():
    assert checkpoints.names() == sorted(registry.ENTRIES)
    for name, entry in registry.ENTRIES.items():
        assert checkpoints.read_meta(name)["kind"] == entry.kind in models.FAMILIES, name


@pytest.mark.parametrize("name", list(registry.ENTRIES))
def test_shipped_checkpoints_record_the_shipped_recipe_and_the_command(name):
    meta = checkpoints.read_meta(name)
    assert registry.recipe_of(name, meta) == registry.entry(name).recipe
    assert meta["command"].startswith(f"python -m prodlab train {name}")
    assert meta["code_version"]["package"] and len(meta["code_version"]["git_commit"]) == 40


def test_only_the_shipped_recipe_writes_to_data_checkpoints(monkeypatch):
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    shipped = registry.entry("dcgan").recipe
    assert registry.output_dir("dcgan", shipped, None) == config.CHECKPOINT_DIR
    other = dataclasses.replace(shipped, batch_size=32)
    assert registry.output_dir("dcgan", other, None).parent == config.RUNS_DIR
    assert registry.run_name("dcgan", other) != registry.run_name("dcgan", dataclasses.replace(other, epochs=1))
    assert registry.output_dir("dcgan", other, config.CHECKPOINT_DIR) == config.CHECKPOINT_DIR  # said explicitly
    monkeypatch.setenv(config.QUICK_ENV, "1")
    assert registry.output_dir("dcgan", registry.entry("dcgan").quick, None) == config.RUNS_DIR / "dcgan-quick"
    monkeypatch.delenv(config.QUICK_ENV)
    assert registry.output_dir("dcgan", shipped, None, "shop") == config.RUNS_DIR / "shop" / "dcgan"  # other data


def test_cli_overrides_are_one_line_and_status_1(capsys):
    done = subprocess.run([sys.executable, "-m", "prodlab", "train", "dcgan", "--set", "no_such_key=1"],
                          capture_output=True, text=True, timeout=120)  # the real command: its status, all it prints
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --set")
    assert "Traceback" not in done.stderr
    assert "epochs" in done.stderr  # names the valid keys
    assert main(["train", "dcgan", "--set", "epochs=abc"]) == 1  # another refusal, the same path: in this process
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --set epochs=abc")


def test_recipes_command_prints_the_registry(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}:" in out for name in registry.ENTRIES) and "batch_size=16" in out
    assert main(["recipes", "nope"]) == 1


def test_every_command_has_an_example_and_the_version_flag(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps the sub-parsers here
    assert {"data", "train", "recipes", "sample", "evaluate", "search", "bench", "figures", "compute"} <= set(commands)
    for name, sub in commands.items():
        assert f"example: python -m prodlab {name}" in sub.format_help() or "example: PRODLAB_QUICK=1 python -m " \
            f"prodlab {name}" in sub.format_help(), name
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "prodlab 0.1.0" in capsys.readouterr().out


TINY = ["--set", "train_limit=64", "--set", "batch_size=16", "--set", "epochs=3", "--set", "bn_batches=1"]


def test_ctrl_c_saves_nothing_half_written_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    real_step, calls = gan_training.gan_step, {"n": 0}

    def interrupted_in_epoch_2(*args):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch: epoch 1 is saved, epoch 2 is half done
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(gan_training, "gan_step", interrupted_in_epoch_2)
    out = tmp_path / "out"
    assert main(["train", "dcgan", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "the last complete epoch, 1, is saved" in err and err.rstrip().endswith("--resume")
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())  # no checkpoint, no partial file
    assert not list((tmp_path / "runs").rglob("*.partial"))
    monkeypatch.setattr(gan_training, "gan_step", real_step)
    assert main(["train", "dcgan", *TINY, "--out", str(out), "--resume"]) == 0
    meta = json.loads((out / "dcgan.json").read_text())
    assert meta["recipe"]["fields"]["epochs"] == 3 and meta["train_steps"] == 12
