"""The gated export files ``cnnx bench`` measures: those beside the checkpoint, made now where missing.

A file is used as it is when the folder's ``parity.json`` records it for this checkpoint,
byte for byte (``cnnx.export.record``); the formats missing are made with ``cnnx export``'s
parity gates, and the record then holds both. An int8 file that missed its gate is recorded
as left out, with why, and not tried again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnx.export import FORMATS, ExportOptions, export_checkpoint, record
from cnnx.export.formats import missing as tools_missing
from cnnx.export.options import CHOICES, ON_REQUEST
from cnnx.export.source import Source

EXPORTED = tuple(FORMATS)  # the formats that come from `cnnx export`


@dataclass
class ExportRequest:
    """How missing formats are exported."""

    data_dir: str | None  # dataset folder for the parity images; None = the export's rules
    arch: str | None  # architecture of a bare state_dict
    threads: int  # torch and onnxruntime threads during parity


def _beside(src: Source) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The exports beside the checkpoint that parity.json records for it, byte for byte, named after it
    (best.pt -> best.onnx ...), and the formats it records as left out (int8 that missed its gate), with why."""
    earlier = record.read(src.path.parent)
    found = {
        name: {
            "file": src.path.parent / Path(f["file"]).name,
            "method": f.get("method"),
            "parity_accuracy": f.get("accuracy"),
        }
        for name, f in record.standing(earlier, src.path.parent, src.sha256).items()
        if Path(f["file"]).name == src.path.stem + FORMATS[name].SUFFIX
    }
    return found, record.skipped(earlier, src.sha256)


def _missing_options(missing: set[str], req: ExportRequest) -> ExportOptions:
    """The export that makes the ``missing`` formats (each with the file it is made from), and int8
    quantised from an fp32 file made in the same call."""
    int8 = missing & set(ON_REQUEST)
    sources = {FORMATS[name].REQUIRES for name in int8}  # an int8 file alone: made from a new fp32 file
    wanted = [name for name in CHOICES if name in missing or name in sources]
    return ExportOptions(
        format=wanted[0],
        also=tuple(wanted[1:]),
        int8=bool(int8),
        int8_optional=True,
        data_dir=req.data_dir,
        arch=req.arch,
        threads=req.threads,
    )


def gated_exports(src: Source, req: ExportRequest, say: Callable[[str], None]) -> dict[str, Any]:
    """The gated export files, exporting now the formats missing (or stale) beside the checkpoint.

    An int8 file that misses its gate is left out and parity.json says why, so a later bench reuses
    the fp32 files and reports the same reason instead of retrying.
    """
    found, skipped = _beside(src)
    # a format whose tools are not installed here is a row that says so, not an export that fails
    skipped.update({name: why for name in EXPORTED if name not in found and (why := tools_missing(name))})
    missing = {name for name in EXPORTED if name not in found and name not in skipped}
    if not missing:
        say(f"reusing {', '.join(str(f['file']) for f in found.values())} (parity.json names this checkpoint)")
        return {"files": found, "reused": list(found), "exported": [], "skipped": skipped}
    say(f"exporting {src.path} ({', '.join(sorted(missing))} missing beside it)")
    report = export_checkpoint(src.path, _missing_options(missing, req), progress=say)
    files, skipped = _beside(src)  # parity.json now records what was there and what was made
    reused = [name for name in files if name not in report["written"]]
    return {"files": files, "reused": reused, "exported": report["written"], "skipped": skipped}
