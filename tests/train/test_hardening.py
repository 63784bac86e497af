"""Hostile and broken checkpoint files through the real CLI: `cnnx export`, `cnnx train --resume`,
`cnnx summary`. Each must give exit code 2 and one line on stderr naming the file: no traceback,
no code run, nothing written."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnnx.core.errors import CheckpointError  # noqa: E402
from cnnx.train import checkpoint as ckpt  # noqa: E402
from cnnx.train.models import build_model  # noqa: E402
from tests.support import MINI_MNIST, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.pt of a 2-epoch seed000-net run on the mini MNIST (under a second)."""
    from cnnx.train.config import TrainConfig
    from cnnx.train.loop import train

    out = tmp_path_factory.mktemp("good") / "run"
    train(
        TrainConfig(
            data_dir=str(MINI_MNIST),
            download=False,
            out=str(out),
            device="cpu",
            arch="seed000-net",
            epochs=2,
            batch_size=64,
            plots=False,
        )
    )
    return out / "last.pt"


class RunsCode:
    """Unpickling this runs a shell command: the file it touches proves whether it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, good: Path) -> None:
    torch.save({"format": "cnnx-checkpoint", "model": RunsCode(path.with_suffix(".ran"))}, path)


def _cut(fraction: float) -> Callable[[Path, Path], None]:
    def write(path: Path, good: Path) -> None:
        data = good.read_bytes()
        path.write_bytes(data[: max(1, int(len(data) * fraction))])

    return write


def _cut_tail(n: int) -> Callable[[Path, Path], None]:
    def write(path: Path, good: Path) -> None:
        path.write_bytes(good.read_bytes()[:-n])  # the zip's central directory is at the end

    return write


def _foreign_zip(path: Path, good: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights/readme.txt", "not a torch file")


# case -> (how to make the file, words the one-line message must hold)
CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "pickle-that-runs-code": (_evil, "holds pickled Python objects (posix.system)"),
    "truncated-at-10-bytes": (_cut(10 / 300_000), "corrupt or truncated"),
    "truncated-at-5%": (_cut(0.05), "corrupt or truncated"),
    "truncated-at-half": (_cut(0.5), "corrupt or truncated"),
    "truncated-by-22-bytes": (_cut_tail(22), "corrupt or truncated"),
    "truncated-by-1-byte": (_cut_tail(1), "corrupt or truncated"),
    "random-bytes": (lambda p, g: p.write_bytes(random.Random(0).randbytes(50_000)), "is not a torch checkpoint"),
    "empty": (lambda p, g: p.write_bytes(b""), "is empty (0 bytes)"),
    "zip-not-torch": (_foreign_zip, "is a zip archive but not a torch checkpoint"),
    "plain-pickle": (lambda p, g: p.write_bytes(pickle.dumps({"weights": [1.0, 2.0]})), "is not a torch checkpoint"),
}

COMMANDS = {
    "export": lambda f, tmp: ["export", str(f), "--out", str(tmp / "exported")],
    "resume": lambda f, tmp: ["train", "--resume", str(f)],
    "summary": lambda f, tmp: ["summary", str(f)],
}

# Every case through every command costs a subprocess each (~1.5 s of torch start-up); the code-running
# pickle and a mid-file cut go through all three, the others through one or two, so each command meets
# every kind of damage.
MATRIX = [
    (case, command)
    for case in CASES
    for command in COMMANDS
    if case in ("pickle-that-runs-code", "truncated-at-half")
    or list(CASES).index(case) % 3 == list(COMMANDS).index(command)
    or (case in ("random-bytes", "empty", "zip-not-torch") and command == "resume")
]


def assert_one_line_error(proc: subprocess.CompletedProcess, path: Path, words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and str(path) in lines[0] and words in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("case", "command"), MATRIX)
def test_hostile_file_is_one_line_error(case: str, command: str, good: Path, tmp_path: Path) -> None:
    make, words = CASES[case]
    path = tmp_path / f"{case}.pt"
    make(path, good)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli(*COMMANDS[command](path, tmp_path))
    assert_one_line_error(proc, path, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written: no export, no run, no marker


def test_the_code_in_the_pickle_would_have_run(good: Path, tmp_path: Path) -> None:
    """Proof the refusal test can fail: the same file loaded the unsafe way runs its command."""
    path = tmp_path / "evil.pt"
    _evil(path, good)
    with pytest.raises(CheckpointError, match="refuses"):
        ckpt.load_checkpoint(path)
    assert not path.with_suffix(".ran").exists()
    torch.load(path, weights_only=False)  # what cnnx never does
    assert path.with_suffix(".ran").exists()


def test_every_cut_of_a_checkpoint_is_a_checkpoint_error(good: Path, tmp_path: Path) -> None:
    """Cut points across the whole file, in-process (a subprocess each would take minutes)."""
    data = good.read_bytes()
    cuts = sorted({*range(1, 64, 7), *range(64, len(data), len(data) // 97), *range(len(data) - 64, len(data))})
    path = tmp_path / "cut.pt"
    for n in cuts:
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError) as info:
            ckpt.load_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value), n


def _with_weights(good: Path, path: Path, state: dict) -> None:
    """``good`` with its weights swapped for ``state`` while its config and spec still say seed000-net
    with 10 classes: what resuming into another architecture meets."""
    data = ckpt.load_checkpoint(good)
    data["model"] = state
    torch.save(data, path)


@pytest.mark.parametrize(
    ("weights", "listed"),
    [
        (
            "seed002-net",
            "8 missing: conv1.weight, conv1.bias, conv2.weight and 5 more; "
            "8 unexpected: model.0.weight, model.0.bias, model.3.weight and 5 more",
        ),
        (
            "seed000-net-12",
            "2 wrong shape: fc2.weight (12, 50) in the file, (10, 50) in the model, "
            "fc2.bias (12,) in the file, (10,) in the model",
        ),
    ],
)
def test_resume_into_another_architecture_lists_the_keys(weights: str, listed: str, good: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    state = (
        build_model("seed000-net", 12).state_dict()
        if weights == "seed000-net-12"
        else build_model(weights, 10).state_dict()
    )
    _with_weights(good, path, state)
    line = assert_one_line_error(run_cli("train", "--resume", str(path)), path.parent / path.name, "do not fit")
    assert (
        f"the weights in {path} do not fit seed000-net with 10 classes, the architecture it names: {listed} (" in line
    ), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_export_with_the_wrong_arch_lists_the_keys(good: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(ckpt.load_checkpoint(good)["model"], bare)  # a seed000-net state_dict
    proc = run_cli("export", str(bare), "--arch", "seed004-demomodel", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: the weights in {bare} do not fit --arch seed004-demomodel with 10 classes: ")
    assert "missing: " in line and "unexpected: " in line and " more" in line
    assert line.endswith("(they fit: seed000-net)")
    assert not (tmp_path / "o").exists()


def test_summary_with_the_wrong_arch_lists_the_keys(good: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(ckpt.load_checkpoint(good)["model"], bare)  # a seed000-net state_dict
    line = assert_one_line_error(run_cli("summary", str(bare), "--arch", "seed004-demomodel"), bare, "do not fit")
    assert line.startswith(f"error: the weights in {bare} do not fit seed004-demomodel: ")
    assert "missing: " in line and "unexpected: " in line and " more" in line


@pytest.mark.parametrize("case", ["truncated-at-half", "truncated-by-22-bytes", "random-bytes"])
def test_inspect_names_a_broken_checkpoint_as_one(case: str, good: Path, tmp_path: Path) -> None:
    make, words = CASES[case]
    path = tmp_path / f"{case}.pt"
    make(path, good)
    assert_one_line_error(run_cli("inspect", str(path)), path, words)


def test_random_bytes_are_never_taken_for_a_damaged_checkpoint(tmp_path: Path) -> None:
    # which error the unpickler raises depends on the bytes (UnpicklingError, IndexError, ...);
    # the verdict must not: without torch.save's header a file is foreign, not truncated
    path = tmp_path / "noise.pt"
    for seed in range(200):
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
            ckpt.load_raw(path)


def test_describe_mismatch_names_a_few_then_counts() -> None:
    want = {f"w{i}": (2, 2) for i in range(6)}
    have = {"w0": torch.zeros(2, 2), "w1": torch.zeros(3, 2), **{f"x{i}": torch.zeros(1) for i in range(5)}}
    assert ckpt.describe_mismatch(want, have) == (
        "4 missing: w2, w3, w4 and 1 more; 5 unexpected: x0, x1, x2 and 2 more; "
        "1 wrong shape: w1 (3, 2) in the file, (2, 2) in the model"
    )
    assert ckpt.describe_mismatch(want, {k: torch.zeros(v) for k, v in want.items()}) == ""
