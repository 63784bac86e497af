"""Honest answers from training: held-out images, outlier exposure, calibration and the refusal threshold.

- ``hold_out``: a seeded share of the training split is kept out of training. Calibration
  and the refusal threshold are fitted on it, never on the test split, so the test
  figures stay a result.
- ``Photographed``: generated non-digits (``cnnx.train.data.negatives``) join every training
  batch (outlier exposure). Their loss (``energy_loss``, the default) keeps their refusal score
  low and that of the labelled digits high; or (``uniform_loss``, the first recipe) it is the
  cross-entropy to the uniform distribution, so the model answers "none of these" with a flat
  output. Training digits photographed the same way join the batch too, with their labels.
- ``fit_honesty``: the temperature minimising the held-out NLL, and the threshold on the
  refusal score (energy, or the largest calibrated probability) that refuses ``refuse`` of the
  held-out real images. Both go into the model spec, which export copies into every file and
  the runtime applies.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnx.core import calibration as cal
from cnnx.core.spec import ModelSpec
from cnnx.train.data import Split
from cnnx.train.data.negatives import Progress, cached_bank, quiet
from cnnx.train.steps import Normalizer, random_shift

MIN_HELD = 50  # held-out images needed to fit a temperature and a threshold worth keeping
# per training image in a batch: photographed digits and non-digits added (bench/honest.py, tune sets)
DIGIT_SHARE, OTHER_SHARE = 0.5, 0.25
BANK = 6000  # images per bank kept on the device; shifted (and non-digits mirrored) afresh each time drawn
BANK_SEED = 0  # every run uses the banks a seed-0 run makes: one pair per machine, not one per seed


def held_out_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sorted indices that train, sorted indices held out) of a split of ``n`` images: ``fraction`` of
    them by a seeded shuffle of its own, so the same seed always holds out the same images and the
    run's generators are untouched. Fewer than MIN_HELD images would fit a temperature and a threshold
    to noise: then none are held out."""
    k = int(round(n * fraction))
    if k < MIN_HELD:
        return torch.arange(n), None
    order = np.random.default_rng(seed).permutation(n)
    # numpy's sort: torch's threaded one took 0.2 s for 60,000 indices with the other core busy
    return torch.from_numpy(np.sort(order[k:])), torch.from_numpy(np.sort(order[:k]))


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """(what trains, what is held out) of ``split``, as ``held_out_indices`` chooses."""
    kept, held = held_out_indices(len(split), fraction, seed)
    if held is None:
        return split, None
    return Split(split.x[kept], split.y[kept]), Split(split.x[held], split.y[held])


def uniform_loss(logits: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """Cross-entropy of (N, K) logits to the uniform distribution (log K for a flat output): the mean
    over the rows, or their sum divided by ``total`` (a distributed rank's share of a global mean)."""
    rows = -F.log_softmax(logits.float(), dim=1).mean(dim=1)  # (N,)
    return rows.mean() if total is None else rows.sum() / total


# energy hinges (Liu et al. 2020, "Energy-based out-of-distribution detection"), on the score the
# runtime refuses by, logsumexp of the logits: a labelled digit below ENERGY_IN and a non-digit above
# ENERGY_OUT are pushed back, squared. A flat output of zeros scores log 10 = 2.3; digits trained with
# the uniform loss score about 9. The margins were set once from those scores, not searched; the loss
# itself was chosen over the uniform one on bench/honest.py's tune sets (README, "The energy loss")
ENERGY_IN, ENERGY_OUT = 7.0, 2.5


def energy_loss(
    labelled: torch.Tensor, others: torch.Tensor, labelled_total: float | None = None, others_total: float | None = None
) -> torch.Tensor:
    """The energy hinges of (N, K) logits of labelled images and (M, K) logits of non-digits: each
    mean over its rows, or its sum divided by its total (a distributed rank's share of a global mean)."""
    low = F.relu(ENERGY_IN - torch.logsumexp(labelled.float(), dim=1)).pow(2)
    high = F.relu(torch.logsumexp(others.float(), dim=1) - ENERGY_OUT).pow(2)
    if labelled_total is None or others_total is None:
        return low.mean() + high.mean()
    return low.sum() / labelled_total + high.sum() / others_total


class Photographed:
    """Banks of images on the training device that went through a camera and the recipe, drawn a batch
    at a time: generated non-digits (``others``), and training digits with their labels (``digits``).

    The digits matter as much as the non-digits: with only non-digits photographed, a model learns
    that anything the recipe made is no digit, and refuses real photos of digits.
    """

    def __init__(
        self,
        spec: ModelSpec,
        train: Split,
        holdout: float,
        seed: int,
        cache_dir: Path,
        device: torch.device,
        progress: Progress = quiet,
    ) -> None:
        """``train``: the whole training split, of which this run (``seed``) holds ``holdout`` out.

        The banks are the ones a run of seed BANK_SEED makes, whatever this run's seed: made once
        (``progress`` follows it; about 40 s on a 2-core CPU) and loaded in milliseconds by every later run.
        Its digits are picked from the images that train in a BANK_SEED run; those this run holds
        out are left out of its bank (held-out images never train, photographed or not).
        """
        kept, _ = held_out_indices(len(train), holdout, BANK_SEED)
        count = min(BANK, len(kept))
        pick = kept[torch.from_numpy(np.random.default_rng(BANK_SEED + 1).choice(len(kept), count, replace=False))]
        digits = train.x[pick]  # (count, 1, 28, 28) uint8
        _, held = held_out_indices(len(train), holdout, seed)
        trains = ~torch.isin(pick, held) if held is not None else torch.ones(count, dtype=torch.bool)
        photographed = torch.from_numpy(cached_bank(spec, count, cache_dir, BANK_SEED, digits[:, 0].numpy(), progress))
        self.digit_x, self.digit_y = photographed[trains].to(device), train.y[pick][trains].to(device)
        self.other_x = torch.from_numpy(cached_bank(spec, count, cache_dir, BANK_SEED, None, progress)).to(device)

    def counts(self, batch: int) -> tuple[int, int]:
        """(photographed digits, non-digits) that join a global batch of ``batch`` training images."""
        return int(batch * DIGIT_SHARE), int(batch * OTHER_SHARE)

    def others(self, gen: torch.Generator, part: slice, drawn: int) -> torch.Tensor:
        """``part`` of ``drawn`` random non-digits (uint8), each shifted and, half of them, mirrored or
        turned upside down: a mirrored letter is still no digit. Draws for all ``drawn``, as the
        augmentations do, so every rank of a distributed run consumes the same random numbers."""
        idx = torch.randint(0, len(self.other_x), (drawn,), generator=gen)[part].to(self.other_x.device)
        x = random_shift(self.other_x[idx], 2, gen, part, drawn)
        how = torch.randint(0, 4, (drawn,), generator=gen)[part].to(x.device)[:, None, None, None]
        x = torch.where(how == 1, x.flip(3), x)
        return torch.where(how == 2, x.flip(2), x)

    def digits(self, gen: torch.Generator, part: slice, drawn: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``part`` of ``drawn`` random photographed digits (uint8, shifted) and their labels."""
        idx = torch.randint(0, len(self.digit_x), (drawn,), generator=gen)[part].to(self.digit_x.device)
        return random_shift(self.digit_x[idx], 2, gen, part, drawn), self.digit_y[idx]


@torch.no_grad()
def held_out_logits(
    model: nn.Module, split: Split, norm: Normalizer, batch: int, memory_format: torch.memory_format
) -> np.ndarray:
    """(N, K) float32 logits of the held-out images, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(norm(split.x[i : i + batch].to(device)).contiguous(memory_format=memory_format)).float().cpu()
        for i in range(0, len(split), batch)
    ]
    return torch.cat(out).numpy()


def fit_honesty(
    logits: np.ndarray, labels: np.ndarray, refuse: float, what: str, method: str = "energy"
) -> dict[str, Any]:
    """The spec fields ``calibration`` and ``openset`` fitted on held-out ``logits``; ``what`` says
    which images they are, e.g. "4,800 mnist training images held out of training".

    ``refuse``: the share of those real images the threshold may refuse; 0 = no refusal. ``method``:
    how an input is scored (``cnnx.core.calibration.scores``).
    """
    t = cal.fit_temperature(logits, labels)
    before, after = cal.softmax(logits), cal.softmax(logits, t)
    calibration = {
        "temperature": round(t, 6),
        "fitted_on": what,
        "nll_before": round(cal.nll(before, labels), 6),
        "nll_after": round(cal.nll(after, labels), 6),
        "ece_before": round(cal.ece(before, labels), 6),
        "ece_after": round(cal.ece(after, labels), 6),
    }
    fields: dict[str, Any] = {"calibration": calibration, "openset": None}
    if refuse > 0:
        score = cal.scores(logits, temperature=t, method=method)
        fields["openset"] = {
            "method": method,
            # rounded down: rounding up could refuse one more held-out image than asked
            "threshold": math.floor(cal.threshold_for(score, refuse) * 1e6) / 1e6,
            "false_refusal": refuse,
            "fitted_on": what,
        }
    return fields
