"""``parity.json``: what export writes beside the files it proved, one record per format.

Exports into one folder build up one record. A new export replaces the record of each
format it writes, and keeps an earlier record only while it still describes a file in the
folder: the same checkpoint (source sha256), the file still there, byte for byte (its
sha256). So after ``cnnx export RUN --format all`` and then ``cnnx export RUN --int8``, the
record holds the TorchScript file of the first call and the two ONNX files of the second.

The same rule tells ``cnnx bench`` which files beside a checkpoint it may use as they are.
Files written by earlier cnnx versions read the same way (``skipped`` may be absent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnx.core.contract import PARITY_FILE
from cnnx.core.fileio import atomic_write
from cnnx.export.formats import FORMATS
from cnnx.train.checkpoint import file_sha256


def read(folder: Path) -> dict[str, Any] | None:
    """The passed export record in ``folder``, or None (no file, unreadable, or not a passed export)."""
    try:
        record = json.loads((Path(folder) / PARITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("passed") else None


def _source_sha(record: dict[str, Any]) -> str | None:
    source = record.get("source")
    return source.get("sha256") if isinstance(source, dict) else None


def standing(record: dict[str, Any] | None, folder: Path, sha256: str) -> dict[str, dict[str, Any]]:
    """The format records of ``record`` that still hold for the checkpoint ``sha256``: each file is in
    ``folder`` (under the name the record gives it) with the sha256 the record gives it."""
    if record is None or _source_sha(record) != sha256:
        return {}
    held = {}
    for name, f in (record.get("formats") or {}).items():
        file = Path(folder) / Path(str(f.get("file", ""))).name
        if name in FORMATS and file.is_file() and file_sha256(file) == f.get("sha256"):
            held[name] = f
    return held


def skipped(record: dict[str, Any] | None, sha256: str) -> dict[str, str]:
    """Formats ``record`` left out for the checkpoint ``sha256`` (an int8 file that missed its gate), with why."""
    if record is None or _source_sha(record) != sha256:
        return {}
    return dict(record.get("skipped") or {})


def merge(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``report`` (this export's record) with what the folder's earlier record still holds.

    Adds ``written`` (formats this export made), ``kept`` (formats kept from an earlier
    export of the same checkpoint, their files unchanged) and ``stale`` (file names: files of the
    earlier record still in the folder that no longer hold, made from another checkpoint or changed
    since; their own self-check still passes, since it compares a file with itself); formats are in
    ``FORMATS`` order.
    """
    earlier = read(folder)
    sha = report["source"]["sha256"]
    tried = {*report["formats"], *report["skipped"]}
    kept = {k: v for k, v in standing(earlier, folder, sha).items() if k not in report["formats"]}
    stale = [
        file.name
        for name, f in ((earlier or {}).get("formats") or {}).items()
        if name in FORMATS and name not in report["formats"] and name not in kept
        for file in [Path(folder) / Path(str(f.get("file", ""))).name]
        if file.name and file.is_file()
    ]
    formats = {**kept, **report["formats"]}
    # an earlier export's left-out formats stand until tried again; those cnnx does not make (NOT_MADE,
    # named by --format all) are said again by each --format all and not carried
    carried = {k: v for k, v in skipped(earlier, sha).items() if k not in tried and k in FORMATS}
    left_out = {**carried, **report["skipped"]}
    return {
        **report,
        "formats": {name: formats[name] for name in FORMATS if name in formats},
        "skipped": {k: v for k, v in left_out.items() if k not in formats},
        "written": list(report["formats"]),
        "kept": list(kept),
        "stale": stale,
    }


def write(report: dict[str, Any], path: Path) -> Path:
    """``report`` as indented JSON at ``path``, atomically."""
    data = json.dumps(report, indent=2, default=str).encode()
    return atomic_write(path, lambda f: f.write(data))
