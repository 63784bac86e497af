"""What `cnnx infer` does with each bad input: the cases of cnnx/testing/bad_inputs.py, run through the real CLI.

    python bench/bad_inputs.py [--model cnnx/models/mnist.onnx]

Each case runs in a fresh folder, between good digit files, in a subprocess (the same runs
tests/runtime/test_hardening.py asserts). Writes docs/bad-inputs.md (a table: the input,
what cnnx did, exit code, the line it printed; with the fuzzing result from
bench/results/fuzz_images.json when bench/fuzz_images.py has run) and
bench/results/bad_inputs.json. Exit code 1 when any case did not behave as required.
Needs the onnx package (pip install -e ".[train]") to build the hostile model files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cnnx.testing.bad_inputs import (  # noqa: E402
    CASES,
    GOOD,
    IMAGE_CASES,
    REFERENCE,
    Case,
    Outcome,
    can_drop_read_override,
    problems,
    run_case,
    shown,
)

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "bad-inputs.md"


def describe(case: Case, outcome: Outcome, bad: str) -> tuple[str, str]:
    """(what cnnx did, the line it printed) for the table."""
    errors = [line for line in outcome.errors if line.strip()]
    if case.model is not None:
        if case.reason:
            return "refused: one line naming the model file, nothing classified", errors[0] if errors else ""
        row = outcome.rows.get(REFERENCE, {})
        return (
            f"runs: the digit classified as {row.get('label')}",
            f"{REFERENCE}: {row.get('label')} ({row.get('probability', 0):.3f})",
        )
    goods = " and ".join(f"{g} ({outcome.rows.get(g, {}).get('label')})" for g in (GOOD, REFERENCE))
    if case.reason:
        mine = next((line for line in errors if line.startswith(f"error: {shown(bad)}")), "")
        return f"refused with one line; {goods} still classified", mine
    row = outcome.rows.get(bad, {})
    return (
        f"classified as {row.get('label')}, as the same digit saved plainly",
        f"{shown(bad)}: {row.get('label')} ({row.get('probability', 0):.3f})",
    )


def code(text: str) -> str:
    """A Markdown code span that survives backticks and pipes inside ``text``."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def write_doc(rows: list[dict], fuzz: dict | None, model: str) -> None:
    image_rows = [r for r in rows if r["kind"] == "image"]
    model_rows = [r for r in rows if r["kind"] == "model"]
    lines = [
        "# Bad inputs: what cnnx does with them",
        "",
        "Produced by `python bench/bad_inputs.py` (the same cases `tests/runtime/test_hardening.py` asserts;",
        "they live in `cnnx/testing/bad_inputs.py`), each run through the real `cnnx infer` in a subprocess.",
        f"Model: `{model}`. Run on {rows[0]['date'] if rows else '?'}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}.",
        "",
        f"**Images.** Each bad image is given between two good digits: `cnnx infer {GOOD} BAD {REFERENCE} --json`.",
        "Exit code 1 means some input could not be classified (the others were); stderr then ends with",
        "`error: 1 of 3 inputs could not be classified`. No case printed a traceback.",
        "",
        "| input | what cnnx does | exit | message |",
        "|---|---|---:|---|",
    ]
    for r in image_rows:
        lines.append(
            f"| {r['input']} | {r['does']}{'' if r['ok'] else ' **(NOT AS REQUIRED)**'} | {r['exit_code']} "
            f"| {code(r['message'])} |"
        )
    lines += [
        "",
        f"**Model files.** `cnnx infer {REFERENCE} --model MODEL [options]`; exit code 2 is a bad model or option.",
        "External data is checked by cnnx itself (paths resolved, symbolic links followed) before",
        "onnxruntime opens the file; a test proves the outside file is never opened (it is a FIFO, which",
        "would block whoever opened it).",
        "",
        "| model file | what cnnx does | exit | message |",
        "|---|---|---:|---|",
    ]
    for r in model_rows:
        lines.append(
            f"| {r['input']} | {r['does']}{'' if r['ok'] else ' **(NOT AS REQUIRED)**'} | {r['exit_code']} "
            f"| {code(r['message'])} |"
        )
    if fuzz:
        lines += [
            "",
            "## Fuzzing",
            "",
            f"`{fuzz['command']}` ({fuzz['date']}, {fuzz['machine']}): the properties of "
            "`tests/runtime/test_fuzz.py` (the default suite runs 400 examples of them) at length, random seeds.",
            "Only cnnx's own error type may escape, each example must finish within 5 s (an alarm fails it at 20 s),",
            "numpy must not divide by zero or compute an invalid value, and no warning may be raised.",
            "",
            "| property | examples | failing | seconds |",
            "|---|---:|---:|---:|",
        ]
        for name, s in fuzz["properties"].items():
            lines.append(f"| `{name}` | {int(s['passing']):,} | {int(s['failing'])} | {s['seconds']:.1f} |")
        lines.append(
            f"| **total** | **{fuzz['examples_total']:,}** | **{fuzz['failing']}** | {fuzz['wall_s']:.1f} (wall) |"
        )
        lines += [
            "",
            "Earlier runs found, and cnnx now handles: a mutated TIFF on which Pillow raised `TypeError`,",
            "float arrays near 1e308 that overflowed when scaled, Pillow's warnings about broken EXIF data on",
            "stderr, and a failed decode that left its file open.",
        ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "cnnx" / "models" / "mnist.onnx"))
    args = parser.parse_args()
    model = Path(args.model).resolve()
    rows, date = [], time.strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory(prefix="cnnx-bad-inputs-") as tmp:
        droppable = can_drop_read_override(Path(tmp))
        for i, case in enumerate(CASES):
            if case.unreadable and not droppable:
                print(f"skipped (this process reads files whatever their mode): {case.name}")
                continue
            start = time.perf_counter()
            outcome, bad = run_case(case, Path(tmp) / f"case-{i:02d}", model)
            found = problems(case, outcome, bad)
            does, message = describe(case, outcome, bad)
            rows.append(
                {
                    "input": case.name,
                    "kind": "image" if case in IMAGE_CASES else "model",
                    "does": does,
                    "exit_code": outcome.code,
                    "expected_exit_code": case.exit_code,
                    "message": message,
                    "stderr": outcome.errors,
                    "ok": not found,
                    "problems": found,
                    "seconds": round(time.perf_counter() - start, 2),
                    "date": date,
                }
            )
            print(f"{'ok ' if not found else 'BAD'} {outcome.code} {case.name}: {message}")
    fuzz_file = RESULTS / "fuzz_images.json"
    fuzz = json.loads(fuzz_file.read_text()) if fuzz_file.exists() else None
    shown_model = os.path.relpath(model, REPO) if model.is_relative_to(REPO) else str(model)
    write_doc(rows, fuzz, shown_model)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bad_inputs.json").write_text(
        json.dumps({"model": shown_model, "date": date, "cases": rows}, indent=2, ensure_ascii=True) + "\n"
    )
    bad = [r["input"] for r in rows if not r["ok"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} cases as required; wrote {DOC.relative_to(REPO)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
