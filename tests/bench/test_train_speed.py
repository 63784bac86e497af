"""bench/train_speed.py as it is run, on the mini MNIST: one interpreter, and two compared seed by seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import MINI_MNIST, REPO

pytest.importorskip("torch")

QUICK = ["--", "--epochs", "1", "--outliers", "0", "--holdout", "0", "--no-plots"]


def _bench(out: Path, *args: str, tmp: Path | None = None) -> dict:
    cmd = [sys.executable, "bench/train_speed.py", "--data-dir", str(MINI_MNIST), "--out", str(out), *args, *QUICK]
    env = {**os.environ, "TMPDIR": str(tmp)} if tmp else None
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("train_speed-*.json")
    return json.loads(path.read_text()) | {"_stdout": done.stdout, "_name": path.name}


def test_two_interpreters_run_each_seed_in_turn_a_row_each(tmp_path):
    twice = ["--python", sys.executable, "--python", sys.executable]
    result = _bench(tmp_path, "--seeds", "0", "1", *twice, "--name", "t")
    assert result["_name"] == "train_speed-default-t.json"
    compared = result["compared"]
    assert [c["python"] for c in compared] == [sys.executable, sys.executable]
    for c in compared:
        assert [r["seed"] for r in c["runs"]] == [0, 1] and c["summary"]["seeds"] == [0, 1]
        assert c["summary"]["torch"] == c["runs"][0]["versions"]["torch"]
        assert 0 < c["summary"]["outside_epochs_median"] < c["summary"]["wall_median"]
    # the same install twice: the same seeds train to the same accuracy (runs are deterministic)
    assert [r["final_accuracy"] for r in compared[0]["runs"]] == [r["final_accuracy"] for r in compared[1]["runs"]]
    lines = result["_stdout"].splitlines()
    seeds = [line.split("seed ")[1][0] for line in lines if " seed " in line and "final" in line]
    assert seeds == ["0", "0", "1", "1"]  # interleaved, so a drift of the machine falls on both alike
    table = lines[lines.index(next(line for line in lines if line.startswith("preset"))) + 1 :]
    assert sum(line.startswith("default") for line in table) == 2


def test_one_interpreter_keeps_the_single_summary_and_leaves_no_run_behind(tmp_path):
    (tmp_path / "tmp").mkdir()
    result = _bench(tmp_path / "out", "--seeds", "0", tmp=tmp_path / "tmp")
    assert result["_name"] == "train_speed-default.json"
    assert result["summary"]["seeds"] == [0] and len(result["runs"]) == 1 and "compared" not in result
    assert result["runs"][0]["run_dir"] is None
    assert list((tmp_path / "tmp").iterdir()) == []  # checkpoints are megabytes a run: removed


def test_keep_runs_keeps_each_arm_and_seed_by_name(tmp_path):
    runs = tmp_path / "runs"
    result = _bench(tmp_path / "out", "--seeds", "0", "--with", "", "--with", "--lr 0.01", "--keep-runs", str(runs))
    assert sorted(p.name for p in runs.iterdir()) == ["arm0-seed0", "arm1-seed0"]
    assert [c["runs"][0]["run_dir"] for c in result["compared"]] == [str(runs / "arm0-seed0"), str(runs / "arm1-seed0")]
    assert (runs / "arm1-seed0" / "best.pt").is_file()


def test_two_architectures_run_each_seed_in_turn_a_row_each(tmp_path):
    result = _bench(tmp_path, "--seeds", "0", "--arch", "mnist-bn16", "--arch", "mnist-bn", "--name", "a")
    compared = result["compared"]
    assert [c["arch"] for c in compared] == [c["summary"]["arch"] for c in compared] == ["mnist-bn16", "mnist-bn"]
    assert [c["summary"]["parameters"] for c in compared] == [74_522, 78_194]
    assert all(c["runs"][0]["config"]["arch"] == c["arch"] for c in compared)
    lines = result["_stdout"].splitlines()
    assert [line.split(" seed ")[0] for line in lines if " seed 0: final" in line] == ["mnist-bn16", "mnist-bn"]


def test_two_option_sets_run_each_seed_in_turn_a_row_each(tmp_path):
    result = _bench(tmp_path, "--seeds", "0", "--with", "", "--with", "--label-smoothing 0.1", "--name", "w")
    compared = result["compared"]
    assert [c["with"] for c in compared] == ["", "--label-smoothing 0.1"]
    assert [c["runs"][0]["config"]["label_smoothing"] for c in compared] == [0.0, 0.1]
    assert all(c["runs"][0]["config"]["epochs"] == 1 for c in compared)  # the options after -- apply to both
    lines = result["_stdout"].splitlines()
    assert [line.split(" seed ")[0] for line in lines if " seed 0: final" in line] == ["[]", "[--label-smoothing 0.1]"]
