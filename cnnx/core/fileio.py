"""Atomic file writes, stdlib only: training, export and the edge runtime all write through here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _temp_prefix(path: Path, pid: int) -> str:
    # The writer's pid is in the name, so a later write can tell a temp file left by a killed
    # process (pid gone) from one another process is writing right now (pid alive).
    return f".{path.name}.{pid}-"


def _writer_pid(name: str) -> int | None:
    """The pid in a temp file name ``.NAME.PID-XXXX.tmp`` made by ``atomic_write``; None for any other name."""
    if not (name.startswith(".") and name.endswith(".tmp")) or "." not in name[1:-4]:
        return None
    tag = name[1:-4].rsplit(".", 1)[1]  # "PID-XXXX": the random part is hex
    pid, dash, _ = tag.partition("-")
    # 0 would mean "my process group" to os.kill: not a writer
    return int(pid) if dash and pid.isdigit() and int(pid) > 0 else None


def sweep_dead_temps(folder: Path) -> list[Path]:
    """Delete the temp files in ``folder`` whose writing process no longer runs (it was killed mid-write)."""
    removed = []
    for entry in os.scandir(folder):
        pid = _writer_pid(entry.name)
        if pid is None or pid == os.getpid():
            continue  # not made here, or this process's own write in progress
        try:
            os.kill(pid, 0)
            continue  # that process still runs: its write may be in progress
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, under another user
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def folder_problem(folder: Path, keep: bool = False) -> str | None:
    """Why no file can be written into ``folder``, or None. Checked by making it (with its parents)
    and creating a file in it, so a command can refuse an unusable output path in one line before
    any work, not fail at its first write. The folders made for the check are removed again unless
    ``keep`` (and always when the check fails), so a refused or failed command leaves nothing."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    why = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # named as atomic_write names its temp files, so one left by a killed check is swept like theirs
        probe = folder / f"{_temp_prefix(folder / 'check', os.getpid())}{os.urandom(6).hex()}.tmp"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
        probe.unlink()
    except OSError as exc:
        # "File exists" or "Not a directory" would not say which part of the path is in the way
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
    if why or not keep:
        for p in made:
            with contextlib.suppress(OSError):  # never made, or not empty: not this check's to remove
                p.rmdir()
    return why


def atomic_write(path: Path, write: Callable[[Any], Any], sweep: bool = False) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, never half of one;
    an exception (a full disk: ``OSError`` ENOSPC or EFBIG; Ctrl-C) removes the temp file
    and propagates, with the old file untouched. The file gets the permissions of an
    ordinary new file (0666 less the umask).

    A process killed mid-write (SIGKILL, power cut) cannot remove its temp file
    (``.NAME.PID-XXXX.tmp``). ``sweep=True`` deletes the temp files in ``path``'s folder
    whose process is gone, after a successful write; it lists the folder, so it is meant
    for a few files rewritten in a small folder (checkpoints), not for many files
    written into one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the file exists, so a Ctrl-C landing anywhere after the open
    # (tempfile.mkstemp still runs Python code after its open) cannot leave an unnamed leftover.
    tmp = path.parent / f"{_temp_prefix(path, os.getpid())}{os.urandom(6).hex()}.tmp"
    try:
        # O_EXCL: never write into someone else's file; 0o666 less the umask, like any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sweep:
        sweep_dead_temps(path.parent)
    return path
