"""Training for honest answers: images held out of training, photographed digits and non-digits
(outlier exposure), and the calibration and refusal threshold fitted per epoch into the spec."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.core.idx import read_idx  # noqa: E402
from cnnx.core.spec import ModelSpec  # noqa: E402
from cnnx.train.config import TrainConfig  # noqa: E402
from cnnx.train.data import Split  # noqa: E402
from cnnx.train.data import negatives as ng  # noqa: E402
from cnnx.train.data.mnist import FACTS  # noqa: E402
from cnnx.train.honesty import (  # noqa: E402
    ENERGY_IN,
    ENERGY_OUT,
    Photographed,
    energy_loss,
    held_out_indices,
    hold_out,
    uniform_loss,
)
from cnnx.train.loop import train  # noqa: E402
from cnnx.train.steps import random_distort  # noqa: E402
from tests.support import MINI_MNIST  # noqa: E402

SPEC = ModelSpec(arch="mnist-bn", input_shape=(1, 28, 28), **FACTS.spec_fields())  # type: ignore[arg-type]


def test_the_run_holds_images_out_and_writes_calibration_and_refusal_into_the_spec(trained_run: Path) -> None:
    state = torch.load(trained_run / "last.pt", weights_only=True)
    spec = ModelSpec.from_dict(state["spec"])
    assert spec.calibration is not None and spec.calibration["temperature"] > 0
    assert "80 mnist training images held out" in spec.calibration["fitted_on"]
    assert spec.openset is not None and spec.openset["method"] == "energy"  # in logit units, T * logsumexp
    assert np.isfinite(spec.openset["threshold"]) and state["config"]["refusal_score"] == "energy"
    assert state["config"]["holdout"] == 0.08 and state["config"]["outlier_loss"] == "energy"
    assert state["config"]["outliers"] == 0.1  # settled for digits: the energy hinges' weight
    assert json.loads((trained_run / "metrics.json").read_text())["held_out_images"] == 80


def test_every_epoch_reports_its_figures_on_the_held_out_images(trained_run: Path) -> None:
    """metrics.json's holdout_accuracy is the saved model's accuracy on exactly the images held out
    (recomputed here from the checkpoint), and holdout_loss the NLL calibration started from."""
    from cnnx.export.source import load_source

    epochs = json.loads((trained_run / "metrics.json").read_text())["epoch_metrics"]
    assert all(0 <= e["holdout_accuracy"] <= 1 and e["holdout_loss"] > 0 for e in epochs)
    state = torch.load(trained_run / "last.pt", weights_only=True)
    spec = ModelSpec.from_dict(state["spec"])
    assert epochs[-1]["holdout_loss"] == spec.calibration["nll_before"]
    _, held = held_out_indices(1000, 0.08, state["config"]["seed"])
    assert held is not None and len(held) == 80
    x = read_idx(MINI_MNIST / "train-images-idx3-ubyte.gz")[held.numpy()].astype(np.float32) / 255.0
    y = read_idx(MINI_MNIST / "train-labels-idx1-ubyte.gz")[held.numpy()]
    x = (x[:, None] - spec.mean[0]) / spec.std[0]
    with torch.inference_mode():
        logits = load_source(trained_run / "last.pt").model(torch.from_numpy(x)).numpy()
    assert epochs[-1]["holdout_accuracy"] == pytest.approx((logits.argmax(1) == y).mean())


def test_without_held_out_images_there_is_neither(tmp_path: Path) -> None:
    cfg = TrainConfig(
        epochs=1, batch_size=64, data_dir=str(MINI_MNIST), download=False, out=str(tmp_path / "r"), device="cpu"
    )
    cfg.holdout, cfg.outliers, cfg.plots = 0.0, 0.0, False
    train(cfg)
    spec = ModelSpec.from_dict(torch.load(tmp_path / "r" / "last.pt", weights_only=True)["spec"])
    assert spec.calibration is None and spec.openset is None
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    (epoch,) = summary["epoch_metrics"]
    assert "holdout_accuracy" not in epoch and "holdout_loss" not in epoch
    assert summary["chosen_by"] == "test_accuracy" and summary["best_epoch"] == 1  # nothing else to choose on


def test_hold_out_is_seeded_and_disjoint() -> None:
    split = Split(torch.arange(1000)[:, None, None, None].to(torch.uint8), torch.arange(1000))
    trains, held = hold_out(split, 0.1, seed=3)
    again, held_again = hold_out(split, 0.1, seed=3)
    assert held is not None and held_again is not None and len(held) == 100 and len(trains) == 900
    assert torch.equal(held.y, held_again.y) and not set(held.y.tolist()) & set(trains.y.tolist())
    assert hold_out(split, 0.0, seed=3)[1] is None and hold_out(split, 0.04, seed=3)[1] is None  # 40 < MIN_HELD


@pytest.mark.parametrize("method", ["energy", "msp"])
def test_the_threshold_refuses_the_share_asked_of_the_held_out_images(method: str) -> None:
    from cnnx.core import calibration as cal
    from cnnx.train.honesty import fit_honesty

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    logits = rng.normal(0, 1, (2000, 10)) + 8 * np.eye(10)[labels] * rng.uniform(0.2, 1.5, (2000, 1))
    fields = fit_honesty(logits.astype(np.float32), labels, 0.01, "synthetic", method)
    t, threshold = fields["calibration"]["temperature"], fields["openset"]["threshold"]
    assert fields["openset"]["method"] == method
    score = cal.scores(logits, temperature=t, method=method)
    assert (score < threshold).sum() == 20  # 1% of 2,000, never one more
    expected = cal.softmax(logits, t).max(axis=1) if method == "msp" else t * np.log(np.exp(logits / t).sum(axis=1))
    np.testing.assert_allclose(score, expected, rtol=1e-5)


def test_a_run_refuses_by_the_score_it_was_told(tmp_path: Path) -> None:
    cfg = TrainConfig(
        epochs=1, batch_size=64, data_dir=str(MINI_MNIST), download=False, out=str(tmp_path / "r"), device="cpu"
    )
    cfg.outliers, cfg.plots, cfg.refusal_score = 0.0, False, "msp"
    train(cfg)
    spec = ModelSpec.from_dict(torch.load(tmp_path / "r" / "last.pt", weights_only=True)["spec"])
    assert spec.openset is not None and spec.openset["method"] == "msp" and 0 < spec.openset["threshold"] < 1


def test_a_run_from_before_holdout_resumes_as_it_began() -> None:
    old = TrainConfig().to_dict()
    for key in ("holdout", "outliers", "refuse"):
        del old[key]
    cfg = TrainConfig.from_dict(old)
    assert (cfg.holdout, cfg.outliers, cfg.refuse) == (0.0, 0.0, 0.0)
    before_energy = TrainConfig().to_dict()
    del before_energy["refusal_score"]  # a run from before the energy score keeps refusing on msp
    assert TrainConfig.from_dict(before_energy).refusal_score == "msp"
    assert TrainConfig().refusal_score == "energy"


def test_a_run_from_before_the_energy_loss_resumes_with_the_uniform_one() -> None:
    before = TrainConfig().to_dict()
    del before["outlier_loss"]
    assert TrainConfig.from_dict(before).outlier_loss == "uniform"
    assert TrainConfig().outlier_loss == "energy"
    with pytest.raises(ConfigError, match="--outlier-loss must be one of energy, uniform"):
        TrainConfig(outlier_loss="flat")


def test_the_outlier_weight_settles_by_the_loss() -> None:
    from cnnx.train.data import load_dataset, settled

    data = load_dataset("mnist", MINI_MNIST, download=False)
    assert settled(TrainConfig(), data).outliers == 0.1
    assert settled(TrainConfig(outlier_loss="uniform"), data).outliers == 0.5
    assert settled(TrainConfig(outliers=0.3), data).outliers == 0.3  # given: kept


def test_the_energy_loss_pushes_digits_up_and_non_digits_down_only_past_their_margins() -> None:
    def at(score: float, rows: int = 3) -> torch.Tensor:  # logits whose logsumexp is ``score``
        return torch.full((rows, 10), score - float(np.log(10)))

    assert energy_loss(at(ENERGY_IN + 1), at(ENERGY_OUT - 1)).item() == 0  # both inside: nothing to learn
    low_digits = at(ENERGY_IN - 2).requires_grad_()
    high_others = at(ENERGY_OUT + 3).requires_grad_()
    loss = energy_loss(low_digits, high_others)
    assert loss.item() == pytest.approx(2**2 + 3**2, rel=1e-5)  # squared hinges, each a mean over its rows
    loss.backward()
    assert low_digits.grad is not None and high_others.grad is not None
    assert (low_digits.grad < 0).all() and (high_others.grad > 0).all()  # descent raises one, lowers the other


def test_the_energy_loss_of_rank_shares_averages_to_the_global_loss() -> None:
    """A distributed rank passes its rows' totals; DDP averages the ranks' gradients, so the mean of
    the ranks' losses must be the loss of the whole batch (an empty share adds nothing, not NaN)."""
    gen = torch.Generator().manual_seed(0)
    digits, others = torch.randn(7, 10, generator=gen) * 4, torch.randn(5, 10, generator=gen) * 4 + 2
    whole = energy_loss(digits, others)
    shares = [(slice(0, 4), slice(0, 5)), (slice(4, 7), slice(5, 5))]
    ranks = [energy_loss(digits[a], others[b], 7 / 2, 5 / 2) for a, b in shares]
    assert torch.stack(ranks).mean().item() == pytest.approx(whole.item(), rel=1e-6)


def test_the_uniform_loss_is_least_for_a_flat_output() -> None:
    flat, sure = torch.zeros(4, 10), torch.eye(10)[:4] * 10
    assert uniform_loss(flat).item() == pytest.approx(np.log(10), rel=1e-5)
    assert uniform_loss(sure).item() > uniform_loss(flat).item()


def test_banks_are_deterministic_cached_and_what_the_recipe_makes(tmp_path: Path) -> None:
    others = ng.cached_bank(SPEC, 24, tmp_path, seed=1)
    assert others.shape == (24, 1, 28, 28) and others.dtype == np.uint8
    assert np.array_equal(others, ng.make_bank(SPEC, 24, seed=1))
    assert len(list(tmp_path.glob("cnnx-negatives-*.npy"))) == 1
    assert np.array_equal(ng.cached_bank(SPEC, 24, tmp_path, seed=1), others)  # read back, not redrawn
    digits = np.zeros((8, 28, 28), np.uint8)
    digits[:, 6:22, 12:16] = 255  # eight 1s
    photographed = ng.cached_bank(SPEC, 8, tmp_path, seed=1, digits=digits)
    assert photographed.shape == (8, 1, 28, 28) and photographed.max() > 200  # the recipe found the ink
    assert not any(letter in ng.LETTERS for letter in "OoIlSZB")


def test_every_seed_trains_on_the_banks_a_seed_0_run_makes(tmp_path: Path) -> None:
    """The photographed banks are made once per machine, not once per seed (about 40 s on a 2-core
    CPU each time): a run of any seed loads seed 0's, less the digits it holds out itself."""
    images = torch.from_numpy(read_idx(next(MINI_MNIST.glob("train-images*"))).copy())[:200, None]
    labels = torch.from_numpy(read_idx(next(MINI_MNIST.glob("train-labels*"))).astype(np.int64))[:200]
    split, cpu, said, ticks = Split(images, labels), torch.device("cpu"), [], []

    def progress(text: str, total: int) -> Callable[[], None]:
        said.append((text, total))
        return lambda: ticks.append(1)

    first = Photographed(SPEC, split, 0.25, 0, tmp_path, cpu, progress)
    # the digits, then the non-digits: both made now, a tick per image
    assert [total for _, total in said] == [150, 150] and "once" in said[0][0] and len(ticks) == 300
    other = Photographed(SPEC, split, 0.25, 3, tmp_path, cpu, progress)
    assert len(said) == 2 and len(list(tmp_path.iterdir())) == 2  # loaded, not made again
    assert torch.equal(first.other_x, other.other_x)
    assert len(first.digit_x) == 150  # the 150 images a seed-0 run trains on (50 of 200 held out)
    # seed 3 holds out other images: those of the bank are left out, the rest are the same pictures
    kept0, _ = held_out_indices(200, 0.25, 0)
    _, held3 = held_out_indices(200, 0.25, 3)
    assert held3 is not None and len(other.digit_x) == len(set(kept0.tolist()) - set(held3.tolist())) < 150
    rows = {bytes(x.numpy()) for x in first.digit_x}
    assert all(bytes(x.numpy()) in rows for x in other.digit_x)


def test_scenes_are_photos_the_digit_recipe_reads() -> None:
    """A crop of an ordinary scene is a grey photo, not ink; most reach the network as some shape."""
    from cnnx.core.errors import ImageError
    from cnnx.runtime.image import preprocess

    rng = np.random.default_rng(0)
    read = 0
    for _ in range(20):
        photo = ng.scene(rng)
        assert photo.dtype == np.uint8 and photo.shape[0] == ng.CANVAS and photo.std() > 1
        with contextlib.suppress(ImageError):  # a flat crop: "no digit found", as the runtime says of the photo
            read += int(preprocess(photo, SPEC).max() > 200)
    assert read >= 10


def test_a_digit_scanned_into_a_box_is_stretched_towards_it() -> None:
    """A narrow 1 scanned into a form's square box comes out wider than MNIST drew it, at low resolution."""
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:16] = 255  # 20 tall, 3 wide
    rng = np.random.default_rng(1)
    for _ in range(10):
        boxed = np.asarray(ng._boxed(one, rng))
        assert 8 <= boxed.shape[0] == boxed.shape[1] <= 16
        ys, xs = np.nonzero(boxed > 20)
        assert (np.ptp(xs) + 1) / (np.ptp(ys) + 1) > 0.4  # plainly downsampled it stays a bar: 0.2


def test_distort_keeps_the_batch_shape_and_is_seeded() -> None:
    x = torch.zeros(16, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 6:22, 12:16] = 255
    a = random_distort(x, 1.0, torch.Generator().manual_seed(0))
    b = random_distort(x, 1.0, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= -1e-3 and a.max() <= 255 + 1e-3 and not torch.equal(a, x.float())


def test_distort_leaves_half_the_images_as_they_were_and_a_share_of_the_batch_draws_as_the_whole() -> None:
    """Each image's distortion is its own: a rank's share of a batch (part of drawn) gets the same
    values the whole batch gives those images, and the images not drawn for distortion pass exactly."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(64, 1, 28, 28, generator=gen) * 255).to(torch.uint8)
    whole = random_distort(x, 1.0, torch.Generator().manual_seed(5))
    share = random_distort(x[16:40], 1.0, torch.Generator().manual_seed(5), slice(16, 40), 64)
    assert torch.equal(share, whole[16:40])
    same = [torch.equal(whole[i], x[i].float()) for i in range(64)]
    assert 16 <= sum(same) <= 48  # about half pass unchanged
    ones = [random_distort(x[:1], 1.0, torch.Generator().manual_seed(seed)) for seed in range(8)]
    kept = [torch.equal(one, x[:1].float()) for one in ones]  # a batch with no image to distort too
    assert any(kept) and not all(kept) and all(one.shape == (1, 1, 28, 28) for one in ones)
