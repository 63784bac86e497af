"""What the runtime does with a spec's calibration and refusal threshold, through the real CLI and
the Classifier API, on the shipped model with those spec fields written into its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnx.core.calibration import softmax
from cnnx.core.contract import normalise
from cnnx.runtime import Classifier
from tests.support import MINI_MNIST, REPO, run_cli, scribble_png, with_spec

pytest.importorskip("onnx")
DIGIT = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"


@pytest.fixture()
def scribble(tmp_path: Path) -> Path:
    return scribble_png(tmp_path)


def test_probabilities_are_softmax_of_the_logits_over_the_temperature(shipped_model: Path, tmp_path: Path) -> None:
    model = with_spec(shipped_model, tmp_path, calibration={"temperature": 3.0})
    hot, plain = Classifier(model), Classifier(shipped_model)
    pixels = hot.pixels(str(DIGIT))[None]
    logits = plain.model.run(normalise(pixels, plain.spec.mean, plain.spec.std))
    np.testing.assert_allclose(hot.probabilities(pixels), softmax(logits, 3.0), rtol=1e-5)
    assert hot.predict(str(DIGIT))[0].probability < plain.predict(str(DIGIT))[0].probability  # less sure at T=3


def test_an_image_below_the_threshold_is_refused_everywhere_it_is_reported(
    shipped_model: Path, tmp_path: Path, scribble: Path
) -> None:
    model = with_spec(shipped_model, tmp_path, openset={"method": "msp", "threshold": 0.999999})
    pred = Classifier(model).predict(str(scribble))[0]
    assert pred.label is None and pred.index is None and pred.refused.startswith("not a digit: score")
    assert pred.probability is not None and pred.top_k  # the best guess is still shown

    proc = run_cli("infer", str(scribble), "--model", str(model), "--json", check=True)
    row = json.loads(proc.stdout)
    assert row["label"] is None and row["refused"].startswith("not a digit")
    table = run_cli("infer", str(scribble), "--model", str(model), check=True).stdout
    refused_row = table.splitlines()[1]
    assert "refused" in refused_row and refused_row.endswith(f"(best guess {pred.top_k[0][0]})"), table
    rows = run_cli("infer", str(scribble), "--model", str(model), "--csv", check=True).stdout.splitlines()
    assert rows[0].endswith("refused,error") and rows[1].split(",")[1] == "" and "not a digit" in rows[1]

    answered = json.loads(run_cli("infer", str(scribble), "--model", str(model), "--json", "--no-reject").stdout)
    assert answered["label"] is not None and "refused" not in answered


def test_a_digit_above_the_threshold_is_answered(shipped_model: Path, tmp_path: Path) -> None:
    model = with_spec(shipped_model, tmp_path, openset={"method": "msp", "threshold": 0.5})
    pred = Classifier(model).predict(str(DIGIT))[0]
    assert pred.label == "7" and pred.refused is None


def test_the_energy_score_refuses_by_the_size_of_the_logits(shipped_model: Path, tmp_path: Path) -> None:
    """An energy threshold is in logit units, T * logsumexp(logits / T) with the spec's temperature."""
    plain = Classifier(shipped_model, reject=False)
    pixels = plain.pixels(str(DIGIT))[None]
    z = plain.logits(pixels)[0].astype(np.float64)
    energy = float(2.0 * np.log(np.exp((z - z.max()) / 2.0).sum()) + z.max())  # T = 2
    (tmp_path / "hi").mkdir(), (tmp_path / "lo").mkdir()
    below = with_spec(shipped_model, tmp_path / "hi", calibration={"temperature": 2.0},
                      openset={"method": "energy", "threshold": energy + 0.01})  # fmt: skip
    above = with_spec(shipped_model, tmp_path / "lo", calibration={"temperature": 2.0},
                      openset={"method": "energy", "threshold": energy - 0.01})  # fmt: skip
    refused = Classifier(below).predict(str(DIGIT))[0]
    assert refused.label is None and f"score {energy:.3f} is below" in refused.refused
    assert Classifier(above).predict(str(DIGIT))[0].label == "7"
    row = json.loads(run_cli("infer", str(DIGIT), "--model", str(below), "--json", check=True).stdout)
    assert row["label"] is None and row["refused"].startswith("not a digit")


def test_reject_on_a_model_without_a_threshold_is_a_one_line_error(shipped_model: Path, tmp_path: Path) -> None:
    model = with_spec(shipped_model, tmp_path, openset=None)  # as a file from before refusal reads
    proc = run_cli("infer", str(DIGIT), "--model", str(model), "--reject")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "carries no refusal threshold" in proc.stderr


def test_eval_reports_calibration_refusal_and_draws_the_reliability_diagram(
    shipped_model: Path, tmp_path: Path
) -> None:
    model = with_spec(
        shipped_model, tmp_path, calibration={"temperature": 1.5}, openset={"method": "msp", "threshold": 0.9}
    )
    png = tmp_path / "reliability.png"
    proc = run_cli("eval", str(model), "--data", str(MINI_MNIST), "--reliability", str(png), check=True)
    assert "calibration: temperature 1.500" in proc.stdout and "refusal: threshold 0.900" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(run_cli("eval", str(model), "--data", str(MINI_MNIST), "--json", check=True).stdout)
    assert result["temperature"] == 1.5 and result["nll_after"] != result["nll_before"]
    assert 0 <= result["refused_share"] < 0.2 and result["answered_accuracy"] >= result["accuracy"]


def test_inspect_shows_the_calibration_and_the_refusal(shipped_model: Path, tmp_path: Path) -> None:
    model = with_spec(
        shipped_model,
        tmp_path,
        calibration={"temperature": 1.25, "fitted_on": "4,800 held-out images"},
        openset={"method": "msp", "threshold": 0.75, "false_refusal": 0.005},
    )
    out = run_cli("inspect", str(model), check=True).stdout
    assert "temperature 1.25, fitted on 4,800 held-out images" in out
    assert "msp below 0.75 (0.5% of held-out real images)" in out
