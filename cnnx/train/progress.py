"""Progress output for training: a tqdm bar per epoch and one line per finished epoch, on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from tqdm import tqdm

from cnnx.train.models import ARCHS, count_parameters
from cnnx.train.run import Reporter


class TqdmReporter(Reporter):
    """Everything on stderr, with --json too: stdout is the result's alone."""

    def __init__(self) -> None:
        self.run_dir: str | None = None
        self.bar: tqdm | None = None
        self.loss: float | None = None

    def _say(self, text: str) -> None:
        click.echo(text, err=True)

    def task(self, text: str, total: int) -> Callable[[], None]:
        self._say(text)  # said in logs too, where there is no bar
        bar = tqdm(total=total, unit="img", leave=False, disable=None, dynamic_ncols=True)

        def tick() -> None:
            bar.update(1)
            if bar.n >= total:
                bar.close()

        return tick

    def start(self, info: dict[str, Any]) -> None:
        self.run_dir = info["run_dir"]
        resumed = f", resuming after epoch {info['resumed_from_epoch']}" if info["resumed_from_epoch"] else ""
        self._say(
            f"training {info['arch']} ({info['parameters']:,} parameters) on {info['dataset']} "
            f"({info['train_images']:,} train / {info['held_out_images']:,} held out / "
            f"{info['test_images']:,} test images), "
            f"device {info['device']}, {info['precision']}{resumed}; run folder {info['run_dir']}"
        )
        skipped = info.get("skipped_images") or []
        if skipped:  # the run goes on without these files
            self._say(f"warning: {len(skipped)} unreadable image(s) left out of the dataset:")
            for why in skipped:
                self._say(f"warning: {why}")

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
        self.bar = tqdm(
            total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False, disable=None, dynamic_ncols=True
        )

    def step(self, images: int, loss: float | None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if loss is not None:
            rate = self.bar.format_dict.get("rate") or 0.0
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate * images:,.0f}", refresh=False)

    def epoch_end(self, r: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
        held = f"held-out accuracy {100 * r['holdout_accuracy']:.2f}%, " if "holdout_accuracy" in r else ""
        self._say(
            f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}, test loss {r['test_loss']:.4f}, "
            f"{held}test accuracy {100 * r['test_accuracy']:.2f}%, {r['images_per_second']:,.0f} img/s, "
            f"{r['epoch_seconds']:.1f} s"
        )


def archs_list() -> list[dict[str, Any]]:
    """The registered architectures, one record each: what `cnnx train --list-archs` shows (parameters
    counted for 10 classes), for its table and for --json."""
    return [
        {
            "name": a.name,
            "dataset": a.dataset,
            "input_shape": list(a.input_shape),  # (C, H, W)
            "parameters": count_parameters(a.build(10)),
            "description": a.summary,
        }
        for a in ARCHS.values()
    ]


def archs_table() -> str:
    rows = [
        f"{a['name']:<20} {a['dataset']:<8} {'x'.join(map(str, a['input_shape'])):<8} {a['parameters']:>9,}  "
        f"{a['description']}"
        for a in archs_list()
    ]
    header = f"{'name':<20} {'dataset':<8} {'input':<8} {'params':>9}  description"
    return "\n".join([header, *rows])
