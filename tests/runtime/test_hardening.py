"""Bad images and hostile model files through the real `cnnx infer`, one subprocess per case.

The cases live in cnnx/testing/bad_inputs.py, which bench/bad_inputs.py also runs to write
docs/bad-inputs.md: each bad image gives one line naming it (no traceback) and exit code 1
while the good files in the same call are still classified; each hostile model file gives
one line naming it and exit code 2; each hard but valid input gets the right answer.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from cnnx.core.errors import ConfigError, ModelFileError
from cnnx.core.onnxio import check_external_data, external_locations
from cnnx.core.spec import SpecOptions, parse_floats, parse_size
from cnnx.runtime import Classifier
from cnnx.runtime.session import OnnxModel
from cnnx.testing.bad_inputs import (
    CASES,
    REFERENCE,
    can_drop_read_override,
    digit,
    external,
    prepare,
    problems,
    run_case,
    run_infer,
)
from tests.support import run_cli, with_spec


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_bad_input_through_the_cli(case, shipped_model, tmp_path):
    if case.model is not None:
        pytest.importorskip("onnx")
    if case.unreadable and not can_drop_read_override(tmp_path):
        pytest.skip("this process can read files whatever their mode, and cannot give that up")
    outcome, bad = run_case(case, tmp_path / "case", shipped_model)
    assert not problems(case, outcome, bad), (problems(case, outcome, bad), outcome)


def _outside_model(tmp_path: Path, shipped_model: Path, target: Path) -> Path:
    import onnx

    model = tmp_path / "model" / "model.onnx"
    external(onnx.load(str(shipped_model)), tmp_path, os.path.relpath(target, model.parent), target, model)
    return model


def test_external_data_outside_the_folder_is_never_opened(shipped_model, tmp_path):
    # the outside "weights" are a FIFO: whatever opens it for reading blocks until the
    # subprocess times out, so a clean refusal within the limit proves nobody opened it
    pytest.importorskip("onnx")
    fifo = tmp_path / "secret" / "weights.bin"
    model = _outside_model(tmp_path, shipped_model, fifo)
    fifo.unlink()
    os.mkfifo(fifo)
    prepare(tmp_path)
    outcome = run_infer([REFERENCE, "--model", str(model)], tmp_path, timeout=60)
    assert outcome.code == 2 and len(outcome.errors) == 1 and "outside its folder" in outcome.errors[0]


def test_external_data_is_refused_before_onnxruntime_sees_the_file(shipped_model, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    model = _outside_model(tmp_path, shipped_model, tmp_path / "elsewhere" / "weights.bin")
    locations = external_locations(model.read_bytes())
    assert locations and set(locations) == {"../elsewhere/weights.bin"}

    def never(*args, **kwargs):
        raise AssertionError("onnxruntime was asked to load the model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", never)  # every cnnx session is made through it
    with pytest.raises(ModelFileError, match="outside its folder"):
        OnnxModel(model)
    from cnnx.tools.inspect import inspect_file

    with pytest.raises(ModelFileError, match="outside its folder"):
        inspect_file(model)


def test_the_external_data_walk_reaches_subgraphs(tmp_path):
    # a tensor inside an If node's branch: hidden from a walk that reads the top graph's initialisers only
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    t = helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0])
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("float_data")
    t.external_data.add(key="location", value="../../etc/shadow")
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=t)],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=then)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    data = helper.make_model(graph).SerializeToString()
    assert external_locations(data) == ["../../etc/shadow"] * 2
    with pytest.raises(ModelFileError, match="outside its folder"):
        check_external_data(tmp_path / "m.onnx", data)
    check_external_data(
        tmp_path / "m.onnx",
        onnx.load_from_string(data).SerializeToString().replace(b"../../etc/shadow", b"weights/e/shadow"),
    )  # inside the folder: allowed


def test_options_describe_a_file_without_a_spec_exactly_as_its_own_spec_does(shipped_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    own = with_spec(shipped_model, tmp_path, calibration=None, openset=None)  # options carry neither
    proto = onnx.load(str(shipped_model))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    images = [digit(i) for i in range(8)]
    want = Classifier(own).predict(images)
    got = Classifier(plain, preprocess="mnist-digit", mean=[0.1307], std=[0.3081], size=28).predict(images)
    assert [p.label for p in got] == [p.label for p in want]
    assert np.array_equal([p.probability for p in got], [p.probability for p in want])
    named = Classifier(
        plain,
        mean=[0.1307],
        std=[0.3081],
        size=(28, 28),
        classes=["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    )
    assert named.spec.color == "L" and named.spec.preprocess == "resize" and named.classes[7] == "seven"
    with pytest.raises(ModelFileError, match=r"\['batch', 10\]; expected \(batch, 2\)"):
        Classifier(plain, mean=[0.1307], std=[0.3081], size=28, classes=["a", "b"])


def test_eval_takes_the_same_options_for_a_file_without_a_spec(shipped_model, tmp_path, mini_mnist):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(shipped_model))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    want = json.loads(run_cli("eval", str(shipped_model), "--data", str(mini_mnist), "--json", check=True).stdout)
    got = json.loads(
        run_cli(
            "eval",
            str(plain),
            "--data",
            str(mini_mnist),
            "--json",
            "--mean",
            "0.1307",
            "--std",
            "0.3081",
            "--size",
            "28",
            check=True,
        ).stdout
    )
    assert got["accuracy"] == want["accuracy"] and got["confusion"] == want["confusion"]
    # the graph takes 28x28 images only: its size goes without saying
    sized = run_cli("eval", str(plain), "--data", str(mini_mnist), "--json", "--mean", "0.1307", "--std", "0.3081")
    assert sized.returncode == 0 and json.loads(sized.stdout)["confusion"] == want["confusion"], sized.stderr
    bare = run_cli("eval", str(plain), "--data", str(mini_mnist))
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    [line] = bare.stderr.strip().splitlines()
    assert line.startswith(f"error: {plain} carries no cnnx spec") and "give --mean, --std and --size" in line
    own = run_cli("eval", str(shipped_model), "--data", str(mini_mnist), "--mean", "0.5")
    assert own.returncode == 2 and "carries its own cnnx spec" in own.stderr


def test_spec_options_take_the_colour_from_the_channels_and_say_what_is_missing():
    rgb = SpecOptions(mean=(0.5,), std=(0.25,), size=(32, 32)).to_spec(3, 4, "m.onnx")
    assert rgb.color == "RGB" and rgb.mean == (0.5,) * 3 and rgb.classes == ["0", "1", "2", "3"]
    assert SpecOptions(mean=(0.5,) * 3, std=(0.2,) * 3, size=(8, 9)).to_spec(None, 2, "m").input_shape == (3, 8, 9)
    with pytest.raises(ConfigError, match="needs --mean, --std, --size"):
        SpecOptions(classes=["a"]).to_spec(1, 1, "m.onnx")
    with pytest.raises(ConfigError, match="needs --mean, --std \\("):  # a graph of one image size: not --size
        SpecOptions(classes=["a"]).to_spec(1, 1, "m.onnx", (28, 28))
    assert SpecOptions(mean=(0.5,), std=(0.5,)).to_spec(1, 3, "m", (28, 24)).input_shape == (1, 28, 24)
    assert SpecOptions(mean=(0.5,), std=(0.5,), size=(8, 8)).to_spec(1, 3, "m", (28, 28)).input_shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="--classes"):
        SpecOptions(mean=(0.5,), std=(0.5,), size=(8, 8)).to_spec(1, None, "m.onnx")
    with pytest.raises(ConfigError, match="2 channels"):
        SpecOptions(mean=(0.5,), std=(0.5,), size=(8, 8)).to_spec(2, 3, "m.onnx")
    with pytest.raises(ConfigError, match="^std must be positive, got 0$"):
        SpecOptions(mean=(0.5,), std=(0.0,), size=(8, 8)).to_spec(1, 3, "m.onnx")
    with pytest.raises(ConfigError, match="^std must be positive, got -0.5 for channel 2 of 3$"):
        SpecOptions(mean=(0.5,), std=(0.2, -0.5, 0.2), size=(8, 8)).to_spec(3, 3, "m.onnx")
    assert parse_floats("0.485, 0.456,0.406", "--mean") == (0.485, 0.456, 0.406)
    assert parse_size("28") == (28, 28) and parse_size("32x24") == (32, 24)
    for bad in ("", "0", "28x", "ax2", "99999"):
        with pytest.raises(ConfigError, match="--size"):
            parse_size(bad)
    for bad in ("x", "nan", "0.5,,0.5"):
        with pytest.raises(ConfigError, match="--mean"):
            parse_floats(bad, "--mean")


def test_runtime_modules_stay_free_of_the_onnx_package():
    import subprocess

    code = (
        "import sys, cnnx.core.onnxio, cnnx.runtime.session, cnnx.runtime.predict, cnnx.tools.inspect; "
        "print(sorted(m for m in ('onnx', 'torch') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
