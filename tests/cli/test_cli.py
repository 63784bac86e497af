"""The real `cnnx` command, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cnnx.cli import main
from tests.support import MINI_MNIST, REPO, run_cli


def _example(command: click.Command) -> list[str]:
    """The arguments of the ``Example: cnnx NAME ...`` line of a command's help."""
    line = next(x.strip() for x in (command.help or "").splitlines() if x.strip().startswith("Example: cnnx "))
    return shlex.split(line.removeprefix("Example: cnnx "))


def test_every_command_has_truthful_help() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0 and top.output.startswith("Usage: ")
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    listed = top.output.split("Commands:", 1)[1]
    assert [line.split()[0] for line in listed.strip().splitlines()] == names  # every command, in order
    for name in names:
        command = main.get_command(ctx, name)
        assert command is not None, name
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        usage = f"Usage: main {name} [OPTIONS]"
        assert result.output.startswith(usage), (name, result.output.splitlines()[0])
        # the example is a command line this very command parses: every option exists, every argument has a place
        example = _example(command)
        assert example[0] == name, example
        values, extra, _ = command.make_parser(click.Context(command, info_name=name)).parse_args(example[1:])
        assert extra == [], (name, extra)
        required = [p.name for p in command.params if isinstance(p, click.Argument) and p.required]
        assert all(values.get(r) not in (None, ()) for r in required), (name, example)


@pytest.mark.parametrize("name", ["export", "inspect", "bench", "eval", "summary"])
def test_commands_that_take_a_run_folder_say_which_checkpoint_it_means(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    text = " ".join(result.output.split())  # as one line: click wraps the text
    assert (
        "_OR_RUN" in text.split("\n")[0]
        and "A run folder means its best.pt (its last.pt when it has no best.pt)" in text
    )


def test_version() -> None:
    proc = run_cli("--version", check=True)
    assert proc.stdout.startswith("cnnx, version ")


def test_train_one_epoch_end_to_end_json(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "run"
    proc = run_cli(
        "train",
        "mnist",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--data-dir",
        str(MINI_MNIST),
        "--no-download",
        "--out",
        str(out),
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)  # stdout is JSON only; progress goes to stderr
    assert result["epochs"] == 1 and result["run_dir"] == str(out)
    assert 0.3 < result["final_accuracy"] <= 1.0
    assert result["config"]["batch_size"] == 32
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "metrics.json"}
    assert json.loads((out / "metrics.json").read_text())["final_accuracy"] == result["final_accuracy"]


def test_train_human_output_and_resume(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "run"
    first = run_cli(
        "train",
        "mnist",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--data-dir",
        str(MINI_MNIST),
        "--out",
        str(out),
        check=True,
    )
    assert "epoch 1: train loss" in first.stderr and "test accuracy" in first.stderr
    assert first.stdout.startswith("done: mnist-bn16 on mnist, 1 epoch, test accuracy ")
    again = run_cli("train", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    assert "epoch 2" not in again.stderr  # the run was complete: nothing left to do
    assert again.stdout.strip() == f"nothing to do: {out} finished its 1 epoch"


def test_missing_data_is_one_line_no_traceback(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    proc = run_cli(
        "train", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download", "--out", str(tmp_path / "run")
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: MNIST not found in")
    assert "CNNX_DATA_DIR" in lines[0]


def test_data_dir_from_environment(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = tmp_path / "data"  # a copy: a run keeps files beside its dataset (photographed banks), never in the package
    data.mkdir()
    for f in MINI_MNIST.glob("*-ubyte.gz"):
        shutil.copy(f, data)
    proc = run_cli(
        "train",
        "mnist",
        "--epochs",
        "1",
        "--outliers",
        "0",  # no banks to make: the data folder is what this test is about
        "--no-download",
        "--out",
        str(tmp_path / "run"),
        "--json",
        env={"CNNX_DATA_DIR": str(data)},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["epochs"] == 1 and result["held_out_images"] == 80  # 8% of the 1,000 digits copied there


def test_bad_option_values_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    proc = run_cli("train", "mnist", "--epochs", "0", "--data-dir", str(MINI_MNIST))
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --epochs must be at least 1, got 0"
    proc = run_cli("train", "mnist", "--arch", "nope", "--data-dir", str(MINI_MNIST), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "unknown architecture 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_list_archs() -> None:
    pytest.importorskip("torch")
    proc = run_cli("train", "--list-archs", check=True)
    for name in ("mnist-bn16", "mnist-bn", "seed000-net", "seed001-net", "seed002-net", "seed004-demomodel"):
        assert name in proc.stdout
    # --json: the same facts, one object per architecture, in the table's order
    listed = json.loads(run_cli("train", "--list-archs", "--json", check=True).stdout)
    header, *rows = proc.stdout.strip().splitlines()
    assert [a["name"] for a in listed] == [row.split()[0] for row in rows]
    for arch, row in zip(listed, rows, strict=True):
        assert set(arch) == {"name", "dataset", "input_shape", "parameters", "description"}
        shape = "x".join(map(str, arch["input_shape"]))
        assert row.split()[:4] == [arch["name"], arch["dataset"], shape, f"{arch['parameters']:,}"]
        assert row.endswith(arch["description"])
    assert next(a for a in listed if a["name"] == "seed000-net")["parameters"] == 21_840  # as the README's table


@pytest.mark.parametrize(
    "switches,named",
    [
        (["--json", "--csv"], "--json and --csv"),
        (["--csv", "--table"], "--table and --csv"),
        (["--table", "--json", "--csv"], "--table, --json and --csv"),
    ],
)
def test_two_output_formats_are_one_line_usage_error(switches: list[str], named: str) -> None:
    """`cnnx infer --json --csv` once printed CSV, the last switch winning in silence."""
    digit = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"
    proc = run_cli("infer", str(digit), *switches)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {named} cannot be combined (give one of --table, --json, --csv)"]
