"""The open-set evaluation images (cnnx/testing/openset.py) and bench/honest.py that measures a model on them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnx.core import calibration as cal
from cnnx.core.errors import ConfigError
from cnnx.testing import openset
from tests.support import MINI_MNIST, REPO, with_spec

# generator -> the modules it needs beyond Pillow and numpy
GENERATORS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "printed_letters": (openset.printed_letters, ("matplotlib",)),
    "handwritten_letters": (openset.handwritten_letters, ("cv2",)),
    "pen_letters": (openset.pen_letters, ("matplotlib",)),
    "scribbles": (openset.scribbles, ()),
    "shapes": (openset.shapes, ()),
    "rings": (openset.rings, ()),
    "blank_pages": (openset.blank_pages, ()),
    "photo_crops": (openset.photo_crops, ("skimage", "matplotlib")),
    "foreign_digits": (openset.foreign_digits, ("sklearn",)),
}
LETTERS = ("printed_letters", "handwritten_letters", "pen_letters")


def _make(name: str, n: int, role: str = "report", seed: int = 0) -> list[Image.Image]:
    make, needs = GENERATORS[name]
    for module in needs:
        pytest.importorskip(module)
    made = make(n, role, seed)
    return made[0] if name == "foreign_digits" else made


def _bytes(images: list[Image.Image]) -> list[bytes]:
    return [im.tobytes() + repr(im.size).encode() for im in images]


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_is_deterministic_for_a_seed(name: str) -> None:
    first, again, other = _make(name, 4, seed=0), _make(name, 4, seed=0), _make(name, 4, seed=1)
    assert _bytes(first) == _bytes(again)
    assert _bytes(first) != _bytes(other)


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_gives_n_rgb_pictures_of_a_photo_size(name: str) -> None:
    images = _make(name, 6)
    assert len(images) == 6
    for im in images:
        assert im.mode == "RGB"
        assert min(im.size) >= 40 and max(im.size) <= 1200, im.size
        if name != "blank_pages":
            grey = np.asarray(im.convert("L"), np.float32)
            assert grey.std() > 3, "a blank picture"  # something stands out: ink, or a photo's content


@pytest.mark.parametrize("name", [*LETTERS, "scribbles", "shapes", "rings"])
def test_drawn_sets_are_dark_ink_on_light_paper(name: str) -> None:
    for im in _make(name, 5):
        grey = np.asarray(im.convert("L"), np.float32)
        assert np.median(grey) > 120, "the paper is light"
        assert np.percentile(grey, 1) < np.median(grey) - 40, "the ink is darker than the paper"


@pytest.mark.parametrize("name", [*LETTERS, "scribbles", "shapes", "photo_crops", "blank_pages"])
def test_tune_and_report_differ_for_the_same_seed(name: str) -> None:
    assert not set(_bytes(_make(name, 4, "tune"))) & set(_bytes(_make(name, 4, "report")))


def test_the_letters_leave_out_the_digit_look_alikes() -> None:
    assert len(openset.LETTERS) == 52 - len(openset.EXCLUDED) == 39
    assert not set(openset.LETTERS) & set("OolIiSsZzBbgq")


def test_tune_and_report_fonts_and_photos_are_disjoint_and_no_dejavu() -> None:
    assert not set(openset.FONTS["tune"]) & set(openset.FONTS["report"])
    assert all(f.startswith("STIX") for f in openset.FONTS["tune"])
    assert all(f.startswith("cm") for f in openset.FONTS["report"])
    assert not set(openset.TUNE_PHOTOS) & set(openset.REPORT_PHOTOS)
    assert openset._SCRIBBLE["tune"] != openset._SCRIBBLE["report"]
    assert openset._SHAPE["tune"] != openset._SHAPE["report"]


def test_every_font_draws_every_letter() -> None:
    pytest.importorskip("matplotlib")
    from PIL import ImageFont

    for name in openset.FONTS["tune"] + openset.FONTS["report"]:
        font = ImageFont.truetype(str(openset.font_path(name)), 48)
        blank = [c for c in openset.LETTERS if openset._glyph(c, font, 0).shape[0] < 10]
        assert not blank, f"{name} draws nothing for {blank}"


def test_every_photo_is_shipped() -> None:
    pytest.importorskip("skimage")
    for name in openset.TUNE_PHOTOS + openset.REPORT_PHOTOS:
        assert openset.photo_path(name).is_file()


def test_foreign_digits_split_by_index_parity() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    target = datasets.load_digits().target
    tune = openset.foreign_digits(7, "tune")[1]
    report = openset.foreign_digits(7, "report")[1]
    assert tune == list(target[0::2][:7]) and report == list(target[1::2][:7])


def test_thinning_leaves_a_connected_line_one_pixel_wide() -> None:
    bar = np.zeros((20, 60), bool)
    bar[5:15, 10:50] = True  # a stroke 10 pixels thick
    line = openset.thin(bar)
    assert line.dtype == np.uint8 and set(np.unique(line)) == {0, 1}
    rows = np.nonzero(line.any(axis=1))[0]
    assert len(rows) == 1 and 5 <= rows[0] < 15  # one row, inside the bar
    cols = np.nonzero(line[rows[0]])[0]
    assert cols.min() < 20 and cols.max() > 40 and np.all(np.diff(cols) == 1)  # most of its length, no gap
    ring = np.zeros((40, 40), bool)
    yy, xx = np.mgrid[:40, :40]
    ring[(np.hypot(yy - 20, xx - 20) > 8) & (np.hypot(yy - 20, xx - 20) < 15)] = True
    skeleton = openset.thin(ring)
    assert skeleton.sum() < ring.sum() / 4 and skeleton[20, 20] == 0  # a thin ring: the hole stays a hole
    assert not skeleton[(np.hypot(yy - 20, xx - 20) <= 8) | (np.hypot(yy - 20, xx - 20) >= 15)].any()


def test_blank_pages_hold_no_ink() -> None:
    for im in openset.blank_pages(5):
        grey = np.asarray(im.convert("L"), np.float32)
        assert np.percentile(grey, 1) > np.median(grey) - 40, "nothing darker than the paper's light and noise"


def test_every_set_says_its_role() -> None:
    names = [s.name for s in openset.SETS]
    assert len(names) == len(set(names))
    for s in openset.SETS:
        assert s.role in openset.ROLES and s.name.endswith(s.role), s
    assert {s.role for s in openset.SETS} == set(openset.ROLES)
    assert [s.name for s in openset.SETS if not s.counted] == ["blank-tune", "blank-report", "rings-report"]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown role 'train'"):
        openset.scribbles(1, "train")


def test_a_missing_package_names_the_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    for make, package in [
        (openset.handwritten_letters, "opencv-python-headless"),
        (openset.foreign_digits, "scikit-learn"),
        (openset.photo_crops, "scikit-image"),
    ]:
        with pytest.raises(ConfigError) as err:
            make(1, "report", 0)
        assert str(err.value) == f'{package} is not installed (pip install "cnnx[bench]")'


# bench/honest.py, loaded as a module for its measuring function
_spec = importlib.util.spec_from_file_location("bench_honest", REPO / "bench" / "honest.py")
assert _spec is not None and _spec.loader is not None
honest = importlib.util.module_from_spec(_spec)
sys.modules["bench_honest"] = honest  # dataclasses look their module up there
_spec.loader.exec_module(honest)


@dataclass
class _Pred:
    """A Prediction as the runtime with refusal gives it: label None and a reason when refused."""

    label: str | None
    probability: float | None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    refused: str | None = None
    error: str | None = None


class _Refuser:
    classes = ["0", "1"]

    def predict(self, paths: list[Path], top_k: int, errors: str) -> list[_Pred]:
        return [
            _Pred("0", 0.95, [("0", 0.95), ("1", 0.05)]),
            _Pred(None, None, [("1", 0.6), ("0", 0.4)], refused="not a digit: too far from every class"),
            _Pred("1", 0.7, [("1", 0.7), ("0", 0.3)]),
            _Pred(None, None, error="no digit found"),
        ]


def test_the_bench_counts_refusals_accuracy_and_calibration_as_the_runtime_reports_them() -> None:
    s = honest.BenchSet("x-report", "report", "test", 4, lambda f, n: ([], []), labelled=True, calibration=True)
    clf = _Refuser()
    ran = honest.Ran(clf.predict([Path(f"{i}.png") for i in range(4)], 2, "keep"), np.zeros(4), 0.0)
    row = honest.measure(clf, s, ran, [0, 1, 0, 1])
    assert (row["accepted_pct"], row["refused_pct"], row["unread_pct"], row["confident_pct"]) == (50, 25, 25, 25)
    assert row["accuracy_pct"] == 25 and row["accuracy_accepted_pct"] == 50  # a refused digit is not right
    assert row["refusal_reasons"] == {"not a digit": 1}  # counted by the reason, without its numbers
    assert row["calibration_images"] == 3  # every image with probabilities, refused or not
    expected_nll = -(np.log(0.95) + np.log(0.6) + np.log(0.3)) / 3
    assert row["nll"] == pytest.approx(expected_nll)


def test_the_bench_counts_what_the_real_runtime_refuses(tmp_path: Path, shipped_model: Path) -> None:
    """The shipped model given a refusal threshold (0.999 on the largest probability): the runtime's own
    refusals reach the table, and with no threshold in its spec it refuses nothing."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(shipped_model))
    refusing = [p for p in proto.metadata_props if p.key != "cnnx.openset"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(refusing)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cnnx.openset", json.dumps({"method": "msp", "threshold": 0.999})
    onnx.save(proto, str(tmp_path / "refusing.onnx"))
    s = honest._openset(next(x for x in openset.SETS if x.name == "scribbles-report"))
    paths, labels = honest.materialise(s, tmp_path / "sets", 12)
    refusing = honest.open_model(tmp_path / "refusing.onnx", None)
    strict = honest.measure(refusing, s, honest.run_set(refusing, paths), labels)
    unthresholded = honest.open_model(with_spec(shipped_model, tmp_path, openset=None), None)
    plain = honest.measure(unthresholded, s, honest.run_set(unthresholded, paths), labels)
    assert strict["refused_pct"] > 0 and strict["refusal_reasons"] == {
        "not a digit": round(strict["refused_pct"] * 12 / 100)
    }
    assert strict["accepted_pct"] + strict["refused_pct"] + strict["unread_pct"] == pytest.approx(100)
    assert plain["refused_pct"] == 0 and plain["accepted_pct"] + plain["unread_pct"] == pytest.approx(100)


def test_matched_operating_points_move_each_threshold_to_refuse_the_same_share_of_photo_like_digits() -> None:
    def bench_set(name: str, labelled: bool = False, counted: bool = True) -> Any:
        return honest.BenchSet(name, "tune", "test", 4, lambda f, n: ([], []), labelled, counted)

    sets = [
        bench_set("mnist-photo-tune", labelled=True),
        bench_set("scribbles-tune"),
        bench_set("shapes-tune"),
        bench_set("foreign-digits-tune", labelled=True),
        bench_set("rings-tune", counted=False),
    ]
    scores = {
        ("m", "mnist-photo-tune"): np.arange(100.0),  # refusing 2% of them: below 2.0
        ("m", "scribbles-tune"): np.array([0.0, 1.5, 2.0, 50.0, -np.inf]),  # -inf: an image it cannot read
        ("m", "shapes-tune"): np.array([9.0, 1.0, 0.5, 0.1, 0.0]),
        ("m", "foreign-digits-tune"): np.array([1.0, 3.0, 5.0, 7.0]),
        ("m", "rings-tune"): np.array([99.0]),
    }
    (row,) = honest.matched(scores, sets, "m", 2)
    assert row["threshold"] == 2.0 and row["role"] == "tune" and row["photo_refused_pct"] == 2
    assert row["scribbles-tune accepted %"] == 40 and row["shapes-tune accepted %"] == 20
    assert row["non-digits accepted %"] == 30  # 3 of the 10 images without digits
    assert row["foreign-digits-tune refused %"] == 25
    assert not any(k.startswith(("rings", "mnist-photo")) for k in row)  # shown apart; the reference itself
    assert honest.matched(scores, sets, "other model", 2) == []
    head, _, line = honest.matched_table([row]).split("\n")
    assert "scribbles%" in head and "foreign-digits refused%" in head and "non-digits%" in head
    assert line.split()[-4:] == ["40.0", "20.0", "25.0", "30.0"]


def test_run_set_gives_predicts_answers_and_the_score_the_runtime_refuses_by(
    tmp_path: Path, shipped_model: Path
) -> None:
    from cnnx.runtime import Classifier

    Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
    digits = sorted((REPO / "cnnx" / "samples" / "digits").iterdir())  # README.md too: not an image
    paths = [*digits, tmp_path / "blank.png"]
    clf = honest.open_model(shipped_model, None)
    ran = honest.run_set(clf, paths)
    assert isinstance(clf, Classifier) and clf.spec.openset is not None
    # each image decoded once, yet the predictions are predict's, refusals included
    want = clf.predict(paths, top_k=len(clf.classes), errors="keep")
    assert [p.to_dict() for p in ran.predictions] == [p.to_dict() for p in want]
    seven = paths.index(REPO / "cnnx" / "samples" / "digits" / "mnist-7.png")
    logits = clf.logits(clf.pixels(paths[seven])[None])
    score = cal.scores(logits, temperature=clf.temperature, method=clf.spec.openset["method"])
    assert ran.scores[seven] == pytest.approx(float(score[0]))
    threshold = clf.spec.openset["threshold"]
    # an image read is refused exactly when its score is below the threshold; one not read scores -inf
    for p, v in zip(want, ran.scores, strict=True):
        assert (bool(p.refused) == bool(v < threshold)) if p.error is None else v == -np.inf
    assert ran.scores[-1] == -np.inf and want[-1].error  # a blank page: refused before any model runs
    assert ran.seconds > 0


@pytest.mark.slow
def test_bench_honest_runs_on_the_shipped_model_and_writes_its_json(tmp_path: Path, shipped_model: Path) -> None:
    for module in ("matplotlib", "cv2", "skimage", "sklearn"):
        pytest.importorskip(module)
    out = tmp_path / "honest.json"
    cmd = [sys.executable, str(REPO / "bench" / "honest.py"), "--n", "3", "--data", str(MINI_MNIST)]
    cmd += ["--json", str(out), "--work", str(tmp_path / "sets")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert {"command", "machine", "models", "sets", "results", "mnist"} <= set(result)
    assert result["machine"]["cpu"] and result["command"].startswith("python bench/honest.py")
    names = {s["name"] for s in result["sets"]}
    assert names == {s.name for s in openset.SETS} | {
        "mnist-test",
        "mnist-photo-report",
        "mnist-marker-report",
        "mnist-photo-tune",
        "mnist-pairs-report",
    }
    rows = {r["set"]: r for r in result["results"] if r["model"] == "mnist"}
    assert all(rows[name]["images"] == 3 for name in names)
    assert (
        rows["mnist-test"]["accuracy_pct"] == 100 and rows["mnist-test"]["ece"] >= 0 and rows["mnist-test"]["nll"] >= 0
    )
    assert {"non-digits (tune)", "non-digits (report)"} <= set(rows)
    assert "letters-printed-report" in proc.stdout and "report" in proc.stdout
