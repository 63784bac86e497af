"""`cnnx train`'s options are TrainConfig's fields: one name each, the config's own choices, no torch for --help."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cnnx.cli import main
from cnnx.cli.train import train as train_command
from cnnx.train.config import DEVICES, OPTIMIZERS, PRESETS, SCHEDULES, TrainConfig
from tests.support import REPO

COMMAND_ONLY = {"dataset", "preset", "resume", "list_archs", "as_json"}  # what the command does, not the run
NO_OPTION = {"dataset", "eval_batch_size"}  # the DATASET argument; a field for library callers only


def _options() -> dict[str, click.Parameter]:
    return {p.name: p for p in train_command.params if p.name}


def test_every_config_field_is_an_option_and_every_option_a_field() -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(_options()) - COMMAND_ONLY == fields - NO_OPTION


def test_choices_and_presets_are_the_configs() -> None:
    options = _options()
    choices = {name: tuple(options[name].type.choices) for name in ("optimizer", "schedule", "device", "preset")}  # type: ignore[attr-defined]
    assert choices == {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES, "preset": tuple(PRESETS)}


def test_every_option_given_reaches_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnx.train.loop as loop

    seen: list[TrainConfig] = []

    def stop(cfg: TrainConfig, reporter: object, resume: Path | None = None) -> None:
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(loop, "train", stop)
    args = ["train", "mnist", "--preset", "best", "--lr", "0.5", "--optimizer", "sgd", "--no-flip", "--shift", "0"]
    result = CliRunner().invoke(main, [*args, "--save-every", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert (cfg.epochs, cfg.lr, cfg.optimizer, cfg.flip, cfg.shift, cfg.save_every) == (8, 0.5, "sgd", False, 0, 2)
    assert cfg.out == str(tmp_path / "r") and cfg.batch_size == TrainConfig.batch_size  # not given: the default


@pytest.mark.parametrize(
    "args,arch",
    [
        (["mnist", "--preset", "best"], "mnist-bn"),  # the network the best preset was measured with
        (["mnist", "--preset", "best", "--arch", "mnist-bn16"], "mnist-bn16"),  # an explicit option wins
        (["cifar10", "--preset", "best"], None),  # other datasets keep their own network
        (["mnist"], None),  # the dataset's default: mnist-bn16
    ],
)
def test_the_best_preset_picks_its_network_for_mnist_only(
    args: list[str], arch: str | None, monkeypatch, tmp_path
) -> None:
    import cnnx.train.loop as loop

    seen: list[TrainConfig] = []

    def stop(cfg: TrainConfig, reporter: object, resume: Path | None = None) -> None:
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(loop, "train", stop)
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert seen[0].arch == arch and seen[0].epochs == (8 if "best" in args else 3)


def test_help_needs_no_torch() -> None:
    code = (
        "import sys\nfrom cnnx.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
