"""Checkpoints: complete, atomic on write, safe on read.

A cnnx checkpoint is a plain dict of tensors and builtins, so it loads with
``torch.load(weights_only=True)``: no pickled classes, no code run on load.

    {"format": "cnnx-checkpoint", "format_version": 1,
     "model": state_dict, "optimizer": ..., "scheduler": ...,
     "rng": {"torch": ByteTensor, "data": ByteTensor, "cuda": [ByteTensor]},
     "epoch": epochs completed, "config": TrainConfig as dict,
     "metrics": [per-epoch records], "best_accuracy": best.pt's test accuracy or None,
     "spec": ModelSpec as dict}

Every failure to read or write one is a one-line ``CheckpointError``: a file that
would run code, a truncated or foreign file, weights of another architecture, a
full disk.
"""

from __future__ import annotations

import errno
import hashlib
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from cnnx.core.contract import BEST, LAST, run_checkpoint
from cnnx.core.errors import CheckpointError
from cnnx.core.fileio import atomic_write
from cnnx.train.config import TrainConfig

FORMAT = "cnnx-checkpoint"
FORMAT_VERSION = 1


def _in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The ``kind`` exception behind ``exc``: torch.save reports whatever stopped its writes (a full
    disk's OSError, Ctrl-C's KeyboardInterrupt) as a RuntimeError raised while handling it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically; a failed write (full disk) leaves the previous file as it was."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        # sweep: temp files of writers killed mid-write (SIGKILL) go with the next good write
        return atomic_write(path, lambda f: torch.save(payload, f), sweep=True)
    except (OSError, RuntimeError) as exc:
        if _in_chain(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # Ctrl-C mid-write: the temp file is gone, the old file kept
        cause = _in_chain(exc, OSError)
        if not isinstance(cause, OSError):
            raise  # not the disk: a bug, keep its traceback
        reason = cause.strerror or str(cause)
        full = cause.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        if full:
            reason = f"the disk is full or the file size limit was reached ({reason})"
        kept = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
        then = (
            f"resume with cnnx train --resume {path.parent}"
            if (path.parent / LAST).is_file()
            else "run the same command again"
        )
        raise CheckpointError(
            f"could not write {path}: {reason}; nothing was half-written and {kept}",
            f"{'free some space' if full else f'make {path.parent} writable'}, then {then}",
        ) from None


def snapshot_name(epoch: int) -> str:
    """The file ``--save-every`` keeps an epoch in (the seeds save ``model_{epoch}.pth`` each epoch)."""
    return f"epoch-{epoch:03d}.pt"


def keep_files(cfg: TrainConfig, epoch: int, accuracy: float, is_best: bool) -> list[str]:
    """Names of the files beside last.pt that this epoch's checkpoint is also written to: best.pt and
    the ``--save-every`` snapshots, only from ``--save-min-acc`` up (seed 000 saves only at 97% or more);
    ``accuracy`` is the one best.pt is chosen by (held-out, or test when nothing is held out)."""
    if accuracy < cfg.save_min_acc:
        return []
    names = [BEST] if is_best else []
    if cfg.save_every and epoch % cfg.save_every == 0:
        names.append(snapshot_name(epoch))
    return names


def resolve_checkpoint(path: Path, resume: bool = False) -> Path:
    """The checkpoint ``path`` means (``cnnx.core.contract.run_checkpoint``: a run folder's best.pt,
    or its last.pt to resume); CheckpointError when there is none."""
    found = run_checkpoint(path, resume)
    if not found.is_file():
        raise CheckpointError(f"no checkpoint at {found}", "give a run folder or a .pt file")
    return found


def _short_reason(exc: BaseException) -> str:
    """torch's read errors in one short clause (they run to several lines of advice)."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)
    for tail in (". This is an internal", " (Could this error", " Please file an issue"):
        text = text.split(tail)[0]
    if type(exc) not in (RuntimeError, OSError, ValueError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:160]


_DAMAGED_HINT = "copy the file again, or use another checkpoint of the run (last.pt, best.pt, epoch-NNN.pt)"
_NOT_TORCH = "{path} is not a torch checkpoint (it begins as neither of torch.save's formats)"
_FOREIGN_HINT = "give a checkpoint written by cnnx train, or weights saved with torch.save(model.state_dict(), PATH)"


def _torch_header(path: Path) -> bool:
    """Does the file begin as torch.save writes: a zip record, or the pickled magic number of the
    legacy format? If not, whatever the unpickler stumbled on, the file is not a damaged checkpoint."""
    from torch.serialization import MAGIC_NUMBER

    with open(path, "rb") as f:
        head = f.read(16)
    return head.startswith(b"PK\x03\x04") or head.startswith(pickle.dumps(MAGIC_NUMBER, protocol=2))


def _not_torch_zip(path: Path) -> bool:
    """A whole zip archive without the ``<name>/data.pkl`` record every torch.save file has."""
    import zipfile

    if not zipfile.is_zipfile(path):  # a torch file cut short has lost its central directory: not "a zip"
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return not any(n.endswith("/data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_raw(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``, on the CPU; any unreadable file is a one-line CheckpointError."""
    path = resolve_checkpoint(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes)", _DAMAGED_HINT)
    try:
        with warnings.catch_warnings():
            # torch warns on stderr about the pickle protocol of foreign files; the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only names the class or function it refused to import: "... GLOBAL posix.system ..."
        blocked = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
        if blocked:
            raise CheckpointError(
                f"{path} holds pickled Python objects ({blocked.group(1)}); loading it would run code "
                "from the file, so cnnx refuses",
                "if it is a whole model saved with torch.save(model), re-save it in the code that made it "
                "with torch.save(model.state_dict(), PATH) and export that with --arch NAME",
            ) from None
        if not _torch_header(path):  # the unpickler's words ("Unsupported operand 35") say nothing here
            raise CheckpointError(_NOT_TORCH.format(path=path), _FOREIGN_HINT) from None
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        reason = found.group(1).strip() if found else _short_reason(exc)
        raise CheckpointError(
            f"{path} is not a torch checkpoint (unreadable data: {reason[:120]})", _FOREIGN_HINT
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse a file means it is damaged or foreign
        if _not_torch_zip(path):
            raise CheckpointError(
                f"{path} is a zip archive but not a torch checkpoint (it has no data.pkl)", _FOREIGN_HINT
            ) from None
        if not _torch_header(path):
            raise CheckpointError(_NOT_TORCH.format(path=path), _FOREIGN_HINT) from None
        raise CheckpointError(f"{path} is corrupt or truncated: {_short_reason(exc)}", _DAMAGED_HINT) from None


def describe_mismatch(want: Mapping[str, tuple[int, ...]], have: Mapping[str, torch.Tensor], limit: int = 3) -> str:
    """Missing, unexpected and wrong-shape keys of ``have`` against ``want`` (name -> shape), a few of each.

    "2 missing: conv1.weight, conv1.bias; 4 unexpected: features.0.weight, ... and 1 more;
    1 wrong shape: fc.weight (10, 50) in the file, (12, 50) in the model"
    """
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [
        f"{k} {tuple(have[k].shape)} in the file, {tuple(want[k])} in the model"
        for k in want
        if k in have and tuple(have[k].shape) != tuple(want[k])
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def load_weights(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, hint: str | Callable[[], str]
) -> torch.nn.Module:
    """``model.load_state_dict(state, strict=True)``, the keys compared first: weights that do not fit
    raise one CheckpointError, "``what``: 2 missing: ...; 1 wrong shape: ...", instead of torch's
    multi-line report. ``hint`` may be a function, called only on failure (it may be costly)."""
    mismatch = describe_mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()}, state)
    if mismatch:
        raise CheckpointError(f"{what}: {mismatch}", hint() if callable(hint) else hint)
    model.load_state_dict(state, strict=True)
    return model


def model_shapes(arch: str, num_classes: int, input_shape: tuple[int, int, int] | None = None) -> dict[str, tuple]:
    """Parameter and buffer names of ``arch`` with their shapes."""
    from cnnx.train.models import build_model  # here: models imports nothing of this module, but keep it lazy

    return {k: tuple(v.shape) for k, v in build_model(arch, num_classes, input_shape).state_dict().items()}


def _check_model_fits(data: dict[str, Any], path: Path) -> None:
    """A checkpoint's weights must fit the architecture its spec names, or resume and export would fail later."""
    spec, state = data.get("spec"), data.get("model")
    if not isinstance(spec, dict) or not isinstance(state, dict):
        return
    arch, classes = spec.get("arch"), spec.get("classes") or []
    if not isinstance(arch, str):
        raise CheckpointError(f"{path} names no architecture in its spec", "use a checkpoint written by cnnx train")
    shape = tuple(spec["input_shape"]) if spec.get("input_shape") else None
    config_arch = (data.get("config") or {}).get("arch")
    if config_arch and config_arch != arch:
        raise CheckpointError(
            f"{path} names two architectures: {config_arch} in its config, {arch} in its spec",
            "use a checkpoint written by cnnx train",
        )
    mismatch = describe_mismatch(model_shapes(arch, len(classes), shape), state)
    if mismatch:
        raise CheckpointError(
            f"the weights in {path} do not fit {arch} with {len(classes)} classes, "
            f"the architecture it names: {mismatch}",
            "use a checkpoint written by cnnx train",
        )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a full cnnx checkpoint (for resuming and export), checking its weights fit its architecture."""
    data = load_raw(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{resolve_checkpoint(path)} is not a cnnx checkpoint",
            "a bare state_dict can be exported with --arch NAME",
        )
    _check_model_fits(data, resolve_checkpoint(path))
    return data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Keys under which other tools nest a state_dict inside a dict ({"state_dict": ...}).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")


def is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a bare or conventionally nested state_dict, minus a DataParallel ``module.`` prefix."""
    if not is_state_dict(obj) and isinstance(obj, dict):
        nested = [obj[k] for k in _NESTED_KEYS if is_state_dict(obj.get(k))]
        obj = nested[0] if nested else obj
    if not is_state_dict(obj):
        raise CheckpointError(
            f"{path} holds neither a cnnx checkpoint nor a state_dict (found {type(obj).__name__})",
            "save the weights with torch.save(model.state_dict(), PATH) and export with --arch NAME",
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj
