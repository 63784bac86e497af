"""Calibration and refusal arithmetic (cnnx.core.calibration) and the spec fields that carry them."""

from __future__ import annotations

import numpy as np
import pytest

from cnnx.core import calibration as cal
from cnnx.core.errors import ModelFileError
from cnnx.core.spec import ModelSpec

SPEC = {
    "arch": "mnist-bn",
    "input_shape": [1, 28, 28],
    "color": "L",
    "mean": [0.1307],
    "std": [0.3081],
    "classes": [str(i) for i in range(10)],
    "preprocess": "mnist-digit",
}


def _sampled(temperature: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): a model exactly that miscalibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, 10))
    p = cal.softmax(logits, temperature).astype(np.float64)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_t: float) -> None:
    logits, labels = _sampled(true_t)
    assert cal.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_calibration_lowers_ece_and_nll_of_an_overconfident_model() -> None:
    logits, labels = _sampled(2.0)  # the model's raw softmax is far too sure
    t = cal.fit_temperature(logits, labels)
    before, after = cal.softmax(logits), cal.softmax(logits, t)
    assert cal.ece(after, labels) < 0.02 < cal.ece(before, labels)
    assert cal.nll(after, labels) < cal.nll(before, labels)


def test_ece_is_the_gap_between_confidence_and_accuracy() -> None:
    probs = np.array([[0.9, 0.1]] * 10)  # 90% sure every time
    assert cal.ece(probs, np.array([0] * 9 + [1])) == pytest.approx(0.0, abs=1e-9)  # and right 9 times in 10
    assert cal.ece(probs, np.array([0] * 5 + [1] * 5)) == pytest.approx(0.4)  # right half the time
    rows = cal.reliability(probs, np.array([0] * 5 + [1] * 5))
    assert len(rows) == cal.BINS and sum(r["count"] for r in rows) == 10


def test_the_threshold_refuses_the_share_asked_for() -> None:
    scores = np.linspace(0.5, 1.0, 1000)
    t = cal.threshold_for(scores, 0.01)
    assert (scores < t).sum() == 10
    assert cal.threshold_for(scores, 0.0) == 0.0


def test_summary_counts_refusals_and_the_accuracy_of_what_is_answered() -> None:
    logits = np.array([[5.0, 0.0], [0.1, 0.0], [0.0, 4.0]])  # sure, unsure, sure
    labels = np.array([0, 1, 1])
    spec = ModelSpec.from_dict(
        {**SPEC, "classes": ["a", "b"], "openset": {"method": "msp", "threshold": 0.9}, "calibration": None}
    )
    found = cal.summary(logits, labels, spec)
    assert found["refused"] == 1 and found["answered_accuracy"] == 1.0
    assert any("refuses 33.33% (1)" in line for line in cal.describe(found))


def test_the_noun_names_what_the_model_knows() -> None:
    assert cal.noun(ModelSpec.from_dict(SPEC)) == "digit"
    assert cal.noun(ModelSpec.from_dict({**SPEC, "preprocess": "resize", "dataset": "cifar10"})) == "cifar10 class"


def test_spec_round_trips_calibration_and_openset() -> None:
    spec = ModelSpec.from_dict(
        {**SPEC, "calibration": {"temperature": 1.3}, "openset": {"method": "msp", "threshold": 0.7}}
    )
    again = ModelSpec.from_onnx_metadata(spec.to_onnx_metadata())
    assert again.calibration == {"temperature": 1.3} and again.openset == {"method": "msp", "threshold": 0.7}
    assert cal.temperature_of(again.calibration) == 1.3 and cal.temperature_of(None) == 1.0


@pytest.mark.parametrize(
    "field, value",
    [
        ("calibration", {"temperature": 0}),
        ("calibration", {"temperature": "hot"}),
        ("calibration", [1.5]),
        ("openset", {"method": "mahalanobis", "threshold": 0.5}),
        ("openset", {"method": "msp"}),
        ("openset", {"method": "msp", "threshold": float("nan")}),
    ],
)
def test_a_malformed_calibration_or_openset_is_a_model_file_error(field: str, value: object) -> None:
    with pytest.raises(ModelFileError, match=field):
        ModelSpec.from_dict({**SPEC, field: value})


def test_the_energy_score_is_t_logsumexp_and_keeps_the_logits_scale() -> None:
    """Energy sees how large the logits are, which softmax throws away: the same probabilities from
    logits ten times larger score higher, so a confident-looking flat-ish input can still be refused."""
    z = np.array([[4.0, 1.0, 0.0], [40.0, 10.0, 0.0], [0.4, 0.1, 0.0]])
    e = cal.scores(z, temperature=2.0, method="energy")
    np.testing.assert_allclose(e, 2.0 * np.log(np.exp(z / 2.0).sum(axis=1)), rtol=1e-6)
    big = np.array([[400.0, 1.0, 0.0]])
    assert np.isfinite(cal.scores(big, temperature=0.5, method="energy")).all()  # no overflow: shifted by the row max
    same = cal.scores(np.array([[2.0, 1.0, 0.0], [12.0, 11.0, 10.0]]), method="msp")
    np.testing.assert_allclose(same[0], same[1], rtol=1e-6)  # msp: equal for logits shifted by 10
    assert (
        cal.scores(np.array([[12.0, 11.0, 10.0]]), method="energy")[0]
        > cal.scores(np.array([[2.0, 1.0, 0.0]]), method="energy")[0]
    )
    np.testing.assert_allclose(cal.scores(z, temperature=2.0, method="msp"), cal.softmax(z, 2.0).max(axis=1))
    with pytest.raises(ModelFileError, match="unknown refusal method"):
        cal.scores(z, method="mahalanobis")


def test_held_out_images_all_right_keep_the_logits_as_trained() -> None:
    # no mistake to weigh: the NLL only falls as T -> 0, and a fit on its bound would make every answer certain
    logits, labels = _sampled(1.0, n=60)
    labels = logits.argmax(axis=1)
    assert cal.fit_temperature(logits, labels) == 1.0
    labels[0] = (labels[0] + 1) % 10  # one mistake: a minimum exists again, above the bound
    assert cal.LOWEST_T * 1.5 < cal.fit_temperature(logits, labels) < 1.0
