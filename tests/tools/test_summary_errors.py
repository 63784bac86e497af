"""`cnnx summary --classes` below 1: one line, exit 2, never a traceback or a silent default."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from cnnx.cli import main  # noqa: E402


@pytest.mark.parametrize("classes", ["0", "-3"])
def test_classes_below_one_are_refused(classes: str) -> None:
    result = CliRunner().invoke(main, ["summary", "mnist-bn", "--classes", classes])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: --classes must be at least 1, got {classes}"]


def test_one_class_is_a_model() -> None:
    result = CliRunner().invoke(main, ["summary", "mnist-bn", "--classes", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["layers"][-1]["output_shape"] == [1, 1]  # the head: (batch, 1 class)
