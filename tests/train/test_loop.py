"""The training engine on real (mini) MNIST: results, files, resume and reproducibility."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import ConfigError  # noqa: E402
from cnnx.train import checkpoint as ckpt  # noqa: E402
from cnnx.train.config import TrainConfig  # noqa: E402
from cnnx.train.loop import Reporter, bf16_is_fast, train  # noqa: E402
from cnnx.train.steps import lr_factor, make_optimizer, random_shift  # noqa: E402
from tests.support import MINI_MNIST, REPO  # noqa: E402


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(data_dir=str(MINI_MNIST), download=False, out=str(out), device="cpu", epochs=3, batch_size=64)
    return TrainConfig(**{**base, **kw})


def test_run_writes_checkpoints_and_metrics(trained_run: Path) -> None:
    assert (trained_run / "last.pt").is_file() and (trained_run / "best.pt").is_file()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epoch_metrics"]] == [1, 2]
    for key in ("train_loss", "test_loss", "test_accuracy", "epoch_seconds", "images_per_second", "lr"):
        assert key in metrics["epoch_metrics"][0]
    assert metrics["device"] == "cpu" and metrics["wall_seconds"] > 0
    # 1,000 real training digits, 2 epochs: far above chance (10%)
    assert metrics["final_accuracy"] > 0.6


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = train(_cfg(tmp_path / "full", arch="seed000-net"))  # dropout: RNG state matters

    class StopAfterFirstEpoch(Reporter):
        def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "cut", arch="seed000-net"), StopAfterFirstEpoch())
    assert ckpt.load_checkpoint(tmp_path / "cut")["epoch"] == 1
    resumed = train(TrainConfig(), resume=tmp_path / "cut")
    a = ckpt.load_checkpoint(full.run_dir / "last.pt")["model"]
    b = ckpt.load_checkpoint(resumed.run_dir / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    keys = ("epoch", "train_loss", "test_loss", "test_accuracy", "lr")
    assert [[e[k] for k in keys] for e in resumed.epochs] == [[e[k] for k in keys] for e in full.epochs]


def test_same_seed_same_result_different_seed_differs(tmp_path: Path) -> None:
    r1 = train(_cfg(tmp_path / "a", epochs=1, seed=7))
    r2 = train(_cfg(tmp_path / "b", epochs=1, seed=7))
    r3 = train(_cfg(tmp_path / "c", epochs=1, seed=8))
    assert r1.final_accuracy == r2.final_accuracy
    assert r1.epochs[0]["train_loss"] == r2.epochs[0]["train_loss"]
    assert r3.epochs[0]["train_loss"] != r1.epochs[0]["train_loss"]


def test_existing_run_is_not_overwritten(trained_run: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_cfg(trained_run))


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "cosine"), ("adam", "constant"), ("adamw", "onecycle")])
def test_every_optimizer_and_schedule_learns(tmp_path: Path, optimizer: str, schedule: str) -> None:
    lr = 0.1 if optimizer == "sgd" else 0.005
    r = train(_cfg(tmp_path / "r", epochs=3, batch_size=32, optimizer=optimizer, schedule=schedule, lr=lr))
    assert r.final_accuracy > 0.5


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_step_as_torchs_own(name: str) -> None:
    """cnnx's optimisers call torch's own update past its torch.compile wrappers: the same weights and
    state, bit for bit, and state_dicts that load into either (a checkpoint resumes in both directions)."""
    from cnnx.train.models.nets import MnistBN

    torch.manual_seed(0)
    ours = MnistBN()
    theirs = copy.deepcopy(ours)
    opt = make_optimizer(ours, name, 0.01, 0.9, 5e-4)
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ref = kind(theirs.parameters(), lr=0.01, weight_decay=5e-4)
    ref.load_state_dict(opt.state_dict())  # every hyper-parameter as make_optimizer set it
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for o, model in ((opt, ours), (ref, theirs)):
        for _ in range(3):
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            o.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(opt, kind)
    ref.load_state_dict(opt.state_dict())
    opt.load_state_dict(ref.state_dict())
    assert opt.state_dict()["param_groups"] == ref.state_dict()["param_groups"]


def test_training_never_imports_the_compiler_or_matplotlib(tmp_path: Path) -> None:
    """torch._dynamo (1.2 s to import on a 2-core CPU) stays out of a run, a resume and a finished
    run's plots: nothing in training compiles. matplotlib (0.6-0.9 s) stays out too: the pictures are
    Pillow's, and outlier exposure finds matplotlib's fonts without importing it."""
    code = (
        "import sys\nfrom cnnx.train.config import TrainConfig\nfrom cnnx.train.loop import train\n"
        f"cfg = TrainConfig(data_dir={str(MINI_MNIST)!r}, download=False, out={str(tmp_path / 'r')!r}, "
        "device='cpu', epochs=1, batch_size=64)\n"
        "train(cfg)\n"
        f"train(TrainConfig(epochs=2), resume={str(tmp_path / 'r')!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'matplotlib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"curves.png", "confusion.png"}


def test_lr_schedules() -> None:
    total = 1000
    one = [lr_factor("onecycle", s, total, 0.2) for s in range(total + 1)]
    assert one[0] == pytest.approx(1 / 25)
    assert max(one) == pytest.approx(1.0) and one.index(max(one)) == 200
    assert one[-1] == pytest.approx(1 / 2500)
    cos = [lr_factor("cosine", s, total, 0.2) for s in range(total + 1)]
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(cos, cos[1:], strict=False))
    assert lr_factor("constant", 500, total, 0.2) == 1.0
    assert not any(math.isnan(v) for v in one + cos)


def test_random_shift_moves_pixels_without_changing_mass() -> None:
    x = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 10:18, 10:18] = 255  # a square away from the border: a shift never clips it
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 2, g)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y.sum(dim=(1, 2, 3)) == x.sum(dim=(1, 2, 3))).all()
    assert (y != x).any(dim=(1, 2, 3)).sum() > 40  # most images moved (1/25 stay put)


def test_random_shift_translates_each_image_whole_and_a_share_of_the_batch_as_the_whole() -> None:
    x = torch.zeros(256, 2, 28, 30, dtype=torch.uint8)
    x[:, 0, 10, 12], x[:, 1, 20, 3] = 255, 7  # one pixel a channel
    y = random_shift(x, 2, torch.Generator().manual_seed(1))
    moves = set()
    for image in y:
        (r0, c0), (r1, c1) = (image[0] == 255).nonzero()[0].tolist(), (image[1] == 7).nonzero()[0].tolist()
        assert (r0 - 10, c0 - 12) == (r1 - 20, c1 - 3)  # both channels moved alike
        moves.add((r0 - 10, c0 - 12))
    assert moves == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25 shifts, no other
    share = random_shift(x[64:192], 2, torch.Generator().manual_seed(1), slice(64, 192), 256)
    assert torch.equal(share, y[64:192])


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (dict(epochs=0), "--epochs must be at least 1, got 0"),
        (dict(lr=-1.0), "--lr must be positive, got -1.0"),
        (dict(refusal_score="odin"), "--refusal-score must be one of"),
        (dict(optimizer="rmsprop"), "--optimizer must be one of"),
        (dict(schedule="step"), "--schedule must be one of"),
        (dict(device="tpu"), "--device must be one of"),
        (dict(warmup=1.5), "--warmup must be in [0, 1), got 1.5"),
        (dict(momentum=1.5), "--momentum must be in [0, 1), got 1.5"),
        (dict(weight_decay=-0.1), "--weight-decay must be 0 or more, got -0.1"),
        (dict(eval_batch_size=0), "eval_batch_size must be at least 1, got 0"),
        (dict(image_size=4), "--image-size must be at least 8 pixels, got 4"),
        (dict(val_split=1.0), "--val-split must be in [0, 1), got 1.0"),
        (dict(save_every=-1), "--save-every must be 0 (off) or a number of epochs, got -1"),
        (
            dict(save_min_acc=97.0),
            "--save-min-acc is a fraction of the images, got 97.0 (e.g. --save-min-acc 0.97",
        ),
    ],
)
def test_bad_config_is_refused(bad: dict, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(**bad)
    assert words in str(err.value)


def test_tensorboard_option_needs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    TrainConfig()  # not asked for: not needed
    with pytest.raises(ConfigError, match="--tensorboard needs the tensorboard package"):
        TrainConfig(tensorboard=True)


def test_a_resumed_config_is_checked_as_a_new_one_is() -> None:
    saved = TrainConfig(save_min_acc=0.9).to_dict()
    with pytest.raises(ConfigError, match="--save-min-acc is a fraction"):
        TrainConfig.from_dict({**saved, "save_min_acc": 90})


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--image-size", "4", "--image-size must be at least 8 pixels, got 4"),
        ("--val-split", "1", "--val-split must be in [0, 1), got 1.0"),
        ("--save-every", "-2", "--save-every must be 0 (off) or a number of epochs, got -2"),
    ],
)
def test_folder_options_are_refused_before_any_image_is_read(
    option: str, value: str, words: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from cnnx.cli import main

    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "x.png").write_bytes(b"not an image: reading it would warn")
    result = CliRunner().invoke(main, ["train", str(tmp_path / "photos"), option, value, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {words}"]
    assert not (tmp_path / "r").exists()


def test_checkpoint_files_follow_save_every_and_save_min_acc() -> None:
    cfg = TrainConfig(save_every=2, save_min_acc=0.9)
    assert ckpt.keep_files(cfg, 1, 0.95, is_best=True) == ["best.pt"]
    assert ckpt.keep_files(cfg, 2, 0.95, is_best=False) == ["epoch-002.pt"]
    assert ckpt.keep_files(cfg, 4, 0.95, is_best=True) == ["best.pt", "epoch-004.pt"]
    assert ckpt.keep_files(cfg, 4, 0.85, is_best=True) == []  # below the threshold: only last.pt
    assert ckpt.keep_files(TrainConfig(), 3, 0.1, is_best=True) == ["best.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_loads_on_cpu(tmp_path: Path) -> None:
    r = train(_cfg(tmp_path / "gpu", epochs=1, device="cuda"))
    state = torch.load(r.run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["model"].values())


def test_mixed_precision_trains_and_keeps_float32_weights(tmp_path: Path) -> None:
    # bf16 autocast runs on every CPU, so the code path is tested here; fast on CPUs with AMX and GPUs
    fp32 = train(_cfg(tmp_path / "fp32", epochs=2, amp=False))
    amp = train(_cfg(tmp_path / "amp", epochs=2, amp=True))
    assert amp.final_accuracy > 0.8 and abs(amp.final_accuracy - fp32.final_accuracy) < 0.05
    assert amp.epochs[0]["train_loss"] != fp32.epochs[0]["train_loss"]  # autocast really ran
    state = ckpt.load_checkpoint(amp.run_dir)
    assert state["config"]["amp"] is True
    assert all(t.dtype in (torch.float32, torch.int64) for t in state["model"].values())
    resumed = TrainConfig.from_dict({k: v for k, v in state["config"].items() if k != "amp"})
    assert resumed.amp is False  # checkpoints from before the option resume as float32 runs
    assert ckpt.load_checkpoint(fp32.run_dir)["config"]["amp"] is False


def test_mixed_precision_by_default_only_where_bf16_is_fast(tmp_path: Path) -> None:
    """--amp unset: on for a CPU with AMX (measured to train faster to the same accuracy), else off;
    resolved before training, so the checkpoint says how the run trained and a resume trains alike."""
    assert TrainConfig().amp is None
    r = train(_cfg(tmp_path / "auto", epochs=1))
    amx = bool(torch.cpu._is_amx_tile_supported())
    state = ckpt.load_checkpoint(r.run_dir)
    assert state["config"]["amp"] is amx and TrainConfig.from_dict(state["config"]).amp is amx  # what --resume reads
    assert json.loads((r.run_dir / "metrics.json").read_text())["config"]["amp"] is amx
    assert bf16_is_fast(torch.device("cpu")) is amx and not bf16_is_fast(torch.device("meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda(tmp_path: Path) -> None:
    r = train(_cfg(tmp_path / "gpu-amp", epochs=2, device="cuda", amp=True))
    assert r.final_accuracy > 0.8
