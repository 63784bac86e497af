"""`cnnx summary`: the shapes the seed notes print by hand, parameters, MACs, checkpoints and state_dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cnnx.cli import main  # noqa: E402
from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.tools.summary import parse_input_size, summarize  # noqa: E402
from cnnx.train.models.seeds import Seed002Module  # noqa: E402

# Seed note 002, section 2.14.1, prints these for the LeNet-style Sequential at batch 64.
SEED_002_PRINTED = """\
Conv2d output shape:	 torch.Size([64, 6, 28, 28])
Sigmoid output shape:	 torch.Size([64, 6, 28, 28])
AvgPool2d output shape:	 torch.Size([64, 6, 14, 14])
Conv2d output shape:	 torch.Size([64, 16, 10, 10])
Sigmoid output shape:	 torch.Size([64, 16, 10, 10])
AvgPool2d output shape:	 torch.Size([64, 16, 5, 5])
Flatten output shape:	 torch.Size([64, 400])
Linear output shape:	 torch.Size([64, 120])
Sigmoid output shape:	 torch.Size([64, 120])
Linear output shape:	 torch.Size([64, 84])
Sigmoid output shape:	 torch.Size([64, 84])
Linear output shape:	 torch.Size([64, 10])"""


def _printed_rows() -> list[tuple[str, list[int]]]:
    rows = []
    for line in SEED_002_PRINTED.splitlines():
        kind, shape = line.split(" output shape:\t torch.Size(")
        rows.append((kind, json.loads(shape.rstrip(")"))))
    return rows


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_lenet_shapes_match_the_seed_notes_printout() -> None:
    code, out = _invoke("summary", "seed002-lenet", "--batch", "64", "--json")
    assert code == 0, out
    s = json.loads(out)
    assert [(r["type"], r["output_shape"]) for r in s["layers"]] == _printed_rows()
    assert [r["name"] for r in s["layers"]] == [str(i) for i in range(12)]  # the seed's own indices
    assert s["input_shape"] == [64, 1, 28, 28]
    # 156 = 6*(25+1); 2,416 = 16*(6*25+1); 48,120 = 120*401; 10,164 = 84*121; 850 = 10*85
    assert [r["params"] for r in s["layers"] if r["params"]] == [156, 2416, 48120, 10164, 850]
    assert s["total_params"] == 61706
    # conv1: 28*28 outputs * 6 maps * 25 taps; conv2: 10*10*16*6*25; then the three linear layers
    assert s["total_macs"] == 117600 + 240000 + 48000 + 10080 + 840


def test_text_table_shows_every_layer_and_the_totals() -> None:
    code, out = _invoke("summary", "seed002-lenet", "--batch", "64")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "seed002-lenet: input [64, 1, 28, 28]"
    assert "Conv2d" in lines[2] and "[64, 6, 28, 28]" in lines[2] and "117,600" in lines[2]
    assert "Linear" in lines[-2] and "[64, 10]" in lines[-2]
    assert lines[-1].startswith("total: 61,706 parameters")


def test_functional_calls_and_a_shared_module_are_listed_once_each_call() -> None:
    s = _summary("seed003-net")
    assert [r["type"] for r in s["layers"]][:3] == ["Conv2d", "relu", "MaxPool2d"]
    pools = [r for r in s["layers"] if r["name"] == "pool"]
    assert [p["output_shape"] for p in pools] == [[1, 6, 14, 14], [1, 16, 5, 5]]
    assert sum(r["params"] for r in s["layers"]) == s["total_params"] == 62006
    assert s["layers"][0]["macs"] == 28 * 28 * 6 * 3 * 25


def _summary(target: str, *args: str) -> dict:
    code, out = _invoke("summary", target, "--json", *args)
    assert code == 0, out
    return json.loads(out)


def test_input_size_changes_the_shapes_of_a_network_that_adapts() -> None:
    s = _summary("cifar-bn", "--input-size", "1x64x64", "--classes", "5")
    assert s["input_shape"] == [1, 1, 64, 64]
    assert s["layers"][0]["output_shape"] == [1, 32, 64, 64] and s["layers"][-1]["output_shape"] == [1, 5]


def test_wrong_input_size_is_one_clear_error() -> None:
    code, out = _invoke("summary", "seed003-net", "--input-size", "28")
    assert code == 2 and "seed003-net cannot take an input of [1, 3, 28, 28]" in out and "--input-size" in out
    code, out = _invoke("summary", "seed003-net", "--input-size", "3by32")
    assert code == 2 and "'3by32' is not a size" in out
    code, out = _invoke("summary", "no-such-net")
    assert code == 2 and "neither a registered architecture nor a file" in out


def test_checkpoint_summary_uses_its_spec(trained_run: Path) -> None:
    s = _summary(str(trained_run))
    assert s["input_shape"] == [1, 1, 28, 28] and s["layers"][-1]["output_shape"] == [1, 10]
    assert s["source"] == str(trained_run)


def test_bare_state_dict_needs_arch_and_must_fit(tmp_path: Path) -> None:
    path = tmp_path / "module_9.pth"
    torch.save(Seed002Module().state_dict(), path)  # what seed 002's training script saves
    code, out = _invoke("summary", str(path))
    assert code == 2 and "--arch" in out
    s = _summary(str(path), "--arch", "seed002-module")
    assert s["total_params"] == 145578 and s["layers"][-1]["output_shape"] == [1, 10]
    # the seed's inference class Tudui has no ReLU, so the training script's weights do not fit it
    code, out = _invoke("summary", str(path), "--arch", "seed002-tudui")
    assert code == 2 and "do not fit seed002-tudui" in out


def test_untraceable_model_falls_back_to_hooks() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 2
            return self.fc(torch.flatten(x, 1))

    s = summarize(Dynamic(), (1, 8, 8), batch=3)
    assert s["method"] == "hooks"
    assert [(r["name"], r["output_shape"]) for r in s["layers"]] == [("conv", [3, 4, 6, 6]), ("fc", [3, 2])]
    assert s["total_macs"] == 6 * 6 * 4 * 9 + 2 * 144


def test_parse_input_size() -> None:
    assert parse_input_size("32", (3, 28, 28)) == (3, 32, 32)
    assert parse_input_size("24x32", (1, 28, 28)) == (1, 24, 32)
    assert parse_input_size("3X64X64", (1, 28, 28)) == (3, 64, 64)
    assert parse_input_size(None, (1, 28, 28)) == (1, 28, 28)
    with pytest.raises(ConfigError):
        parse_input_size("0", (1, 28, 28))
