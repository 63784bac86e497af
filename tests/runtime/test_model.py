"""The onnxruntime session, the Classifier API and evaluation, on a real exported model."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import cnnx.runtime.predict as predict_module
from cnnx.core.calibration import softmax
from cnnx.core.contract import normalise
from cnnx.core.errors import ConfigError, DataNotFoundError, ImageError, ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.plots import draw_confusion
from cnnx.runtime import Classifier
from cnnx.runtime.evaluate import EvalResult, confusion_table, evaluate, load_labelled
from cnnx.runtime.session import OnnxModel
from tests.support import write_pngs


def test_session_reads_the_spec_and_runs_without_spinning(onnx_model):
    model = OnnxModel(onnx_model, threads=1)
    assert model.spec.input_shape == (1, 28, 28) and model.spec.preprocess == "mnist-digit"
    assert model.spec.classes == [str(i) for i in range(10)]
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert OnnxModel(onnx_model).threads == physical_cores() >= 1


def test_classifier_gives_the_same_answer_for_paths_images_and_arrays(onnx_model, test_digits, tmp_path):
    images, labels = test_digits
    paths = write_pngs(images[:20], labels[:20], tmp_path)
    clf = Classifier(onnx_model)
    by_path = clf.predict(paths, top_k=3)
    by_image = clf.predict([Image.open(p) for p in paths], top_k=3)
    by_array = clf.predict(list(images[:20]), top_k=3)
    assert [p.label for p in by_path] == [p.label for p in by_image] == [p.label for p in by_array]
    assert by_path[0].path == str(paths[0]) and by_image[0].path == "<PngImageFile>"
    assert np.mean([p.index == y for p, y in zip(by_path, labels[:20], strict=False)]) >= 0.8
    single = clf.predict(str(paths[0]))  # one path on its own works too
    assert single[0].label == by_path[0].label
    for p in by_path:
        assert len(p.top_k) == 3 and p.top_k[0] == (p.label, p.probability)
        assert p.top_k[0][1] >= p.top_k[1][1] >= p.top_k[2][1]


def test_probabilities_are_the_softmax_of_the_logits_over_the_temperature(onnx_model, test_digits):
    images, _ = test_digits
    clf = Classifier(onnx_model)
    t = clf.spec.calibration["temperature"]  # fitted on the run's held-out images
    assert clf.temperature == t != 1.0
    logits = clf.model.run(normalise(images[:50, None], clf.spec.mean, clf.spec.std)) / t  # (50, 10)
    probs = clf.probabilities(images[:50, None])
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    preds = clf.predict(list(images[:50]), top_k=10)
    np.testing.assert_allclose([p.top_k[0][1] for p in preds], probs.max(1), rtol=1e-6)
    assert [p.index for p in preds] == list(logits.argmax(1))
    assert np.isfinite(softmax(np.array([[1e4, 0.0], [-1e4, 0.0]], np.float32))).all()


def test_batch_size_does_not_change_results(onnx_model, digit_pngs):
    paths = sorted(digit_pngs.glob("*.png"))[:23]
    a = Classifier(onnx_model, batch_size=5).predict(paths, top_k=2)
    b = Classifier(onnx_model, batch_size=256).predict(paths, top_k=2)
    assert [p.label for p in a] == [p.label for p in b]
    np.testing.assert_allclose([p.probability for p in a], [p.probability for p in b], rtol=1e-5)


def test_worker_processes_give_the_serial_answers_in_order_bad_files_included(onnx_model, digit_pngs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    paths = sorted(digit_pngs.glob("*.png"))[:150]
    paths = [str(p) for p in paths[:70]] + [str(bad)] + [str(p) for p in paths[70:]]
    serial = Classifier(onnx_model, batch_size=32, workers=1).predict(paths, top_k=3, errors="keep")
    forked = Classifier(onnx_model, batch_size=32, workers=2).predict(paths, top_k=3, errors="keep")
    assert [p.to_dict() for p in forked] == [p.to_dict() for p in serial]
    assert [p.path for p in forked] == paths and forked[70].error and "bad.png" in forked[70].error
    assert all(p.ok for i, p in enumerate(forked) if i != 70)


def test_worker_processes_start_only_for_long_lists_of_files():
    from cnnx.runtime.parallel import PARALLEL_FROM, auto_workers

    files = [f"{i}.png" for i in range(PARALLEL_FROM)]
    if sys.platform == "linux":
        assert auto_workers(files, 2) == 2
    assert auto_workers(files[:-1], 2) == 0  # too few to pay for the forks
    assert auto_workers(files, 1) == 0  # one core: nothing to overlap
    assert auto_workers(iter(files), 2) == 0  # a stream of unknown length decodes in-process
    assert auto_workers([*files[:-1], np.zeros((28, 28), np.uint8)], 2) == 0  # in-memory images stay here
    with pytest.raises(ConfigError):
        Classifier(workers=-1)


def test_bad_images_raise_or_are_kept(onnx_model, digit_pngs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    good = sorted(digit_pngs.glob("*.png"))[0]
    clf = Classifier(onnx_model)
    with pytest.raises(ImageError, match="bad.png: not an image"):
        clf.predict([good, bad])
    kept = clf.predict([good, bad, good], errors="keep")
    assert [p.ok for p in kept] == [True, False, True] and kept[0].label == kept[2].label
    assert kept[1].label is None and "not an image" in kept[1].error


def test_missing_default_model_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(predict_module, "DEFAULT_MODEL", tmp_path / "models" / "mnist.onnx")
    with pytest.raises(ModelFileError, match="--model"):
        Classifier()


def _broken_models(onnx_model, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    data = onnx_model.read_bytes()
    files = {"garbage": b"\x00\x01 this is not a model " * 10, "truncated": data[: len(data) // 2], "empty": b""}
    proto = onnx.load(str(onnx_model))
    del proto.metadata_props[:]
    files["no-spec"] = proto.SerializeToString()
    # a rank-2 model (flattened 784 -> 10) that claims the spec of a 1x28x28 model
    spec_props = {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props}
    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.zeros(7840, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [w],
    )
    flat = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    flat.ir_version = 8
    for k, v in spec_props.items():
        flat.metadata_props.add(key=k, value=v)
    files["rank-2"] = flat.SerializeToString()
    return files


@pytest.mark.parametrize(
    "case, message",
    [
        ("garbage", "not a usable ONNX model"),
        ("truncated", "not a usable ONNX"),
        ("empty", "not a usable ONNX"),
        ("no-spec", "carries no cnnx spec"),
        ("rank-2", "rank 2"),
    ],
)
def test_unusable_model_files_are_named_with_the_reason(onnx_model, tmp_path, case, message):
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(_broken_models(onnx_model, tmp_path)[case])
    with pytest.raises(ModelFileError) as err:
        OnnxModel(path)
    assert str(path) in str(err.value) and message in str(err.value)
    with pytest.raises(ModelFileError, match="no model file"):
        OnnxModel(tmp_path / "nowhere.onnx")


def test_eval_on_idx_matches_the_training_figure_and_torch(onnx_model, trained_run, mini_mnist):
    from cnnx.tools.modelfile import open_model
    from cnnx.train.checkpoint import load_checkpoint

    onnx_net = OnnxModel(onnx_model)
    data = load_labelled(mini_mnist, onnx_net.spec)
    assert data.kind == "mnist-idx" and len(data) == 500
    result = evaluate(onnx_net, data)
    # the checkpoint's own test accuracy, measured by training on the same 500 digits
    recorded = load_checkpoint(trained_run / "last.pt")["metrics"][-1]["test_accuracy"]
    assert result.accuracy == pytest.approx(recorded, abs=1e-6)
    torch_result = evaluate(open_model(trained_run), data)
    assert (torch_result.confusion == result.confusion).all()
    assert result.confusion.sum() == 500 and result.correct == round(recorded * 500)


def test_eval_on_torchscript_with_its_spec(onnx_model, exported, mini_mnist):
    pytest.importorskip("torch")
    from cnnx.tools.modelfile import open_model

    ts = open_model(exported / "mnist.torchscript")
    spec = OnnxModel(onnx_model).spec
    assert (ts.spec.arch, ts.spec.input_shape, ts.spec.mean, ts.spec.std, ts.spec.classes, ts.spec.preprocess) == (
        spec.arch,
        spec.input_shape,
        spec.mean,
        spec.std,
        spec.classes,
        spec.preprocess,
    )
    data = load_labelled(mini_mnist, ts.spec)
    assert (evaluate(ts, data).confusion == evaluate(OnnxModel(onnx_model), data).confusion).all()


def test_eval_on_an_image_folder_tree(onnx_model, test_digits, tmp_path, mini_mnist):
    images, labels = test_digits
    for c in range(10):
        pick = np.flatnonzero(labels == c)[:8]
        write_pngs(images[pick], labels[pick], tmp_path / "tree" / str(c))
    (tmp_path / "tree" / "7" / "broken.png").write_bytes(b"")
    model = OnnxModel(onnx_model)
    data = load_labelled(tmp_path / "tree", model.spec)
    assert data.kind == "image-folder" and len(data) == 81
    result = evaluate(model, data, batch_size=16)
    assert result.total == 80 and len(result.failed) == 1 and "broken.png: empty file" in result.failed[0]
    # the same digits straight from the IDX file score the same: PNG + recipe == IDX
    idx = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
    direct = model.run(normalise(images[idx, None], model.spec.mean, model.spec.std)).argmax(1)
    assert result.correct == int((direct == labels[idx]).sum())
    path = draw_confusion(result.confusion, result.classes, tmp_path / "c.png", "test")
    assert Image.open(path).format == "PNG" and Image.open(path).size[0] > 10 * 40


def test_the_text_confusion_matrix_never_cuts_a_class_name():
    counts = np.array([[98, 1, 0], [2, 113, 3], [0, 0, 12]])
    short = confusion_table(EvalResult("m", "d", "image-folder", ["cat", "dog", "bird"], counts, [], 0.0)).splitlines()
    assert short[1].split() == ["cat", "dog", "bird"] and short[2].split() == ["cat", "98", "1", "0"]
    # two names alike in their first 8 characters: columns numbered, each row names its class in full
    names = ["airplane_left", "airplane_right", "cat"]
    long = confusion_table(EvalResult("m", "d", "image-folder", names, counts, [], 0.0)).splitlines()
    assert "numbered as the rows" in long[0] and long[1].split() == ["0", "1", "2"]
    assert [line.split()[:2] for line in long[2:]] == [["0", "airplane_left"], ["1", "airplane_right"], ["2", "cat"]]
    assert long[3].split()[2:] == ["2", "113", "3"]
    assert len({len(line) for line in long[1:]}) == 1  # aligned


def test_eval_data_errors(onnx_model, tmp_path):
    spec = OnnxModel(onnx_model).spec
    with pytest.raises(DataNotFoundError, match="no folder"):
        load_labelled(tmp_path / "nope", spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="neither MNIST IDX files nor images"):
        load_labelled(tmp_path / "empty", spec)
    (tmp_path / "cats" / "cat").mkdir(parents=True)
    Image.new("L", (28, 28)).save(tmp_path / "cats" / "cat" / "a.png")
    with pytest.raises(DataNotFoundError, match="not classes of this model"):
        load_labelled(tmp_path / "cats", spec)
