"""How ``cnnx infer`` writes its results: an aligned table (default), JSON lines or CSV.

Rows are produced one at a time, so results stream out as batches finish.
"""

from __future__ import annotations

import io
import json

from cnnx.runtime.predict import Prediction

FORMATS = ("table", "json", "csv")
REFUSED = "refused"  # the table's word for an image that is none of the classes
MAX_PATH_WIDTH = 60  # a longer path still prints whole; it only stops aligning the columns
MAX_LABEL_WIDTH = 24  # likewise for a long class name


class Formatter:
    """``header()`` once, then ``row(prediction)`` per image; None means nothing to print."""

    def __init__(self, fmt: str, top_k: int, paths: list[str], classes: list[str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.fmt, self.k = fmt, top_k
        self.width = min(max([len("image"), *(len(p) for p in paths)]), MAX_PATH_WIDTH)
        # a folder's class names ("golden retriever") run longer than digits: the column fits them
        self.label_width = min(max([8, *(len(c) for c in classes or ())]), MAX_LABEL_WIDTH)

    def header(self) -> str | None:
        if self.fmt == "table":
            head = f"{'image':<{self.width}}  {'label':<{self.label_width}} {'prob':>6}"
            return head + ("  top-" + str(self.k) if self.k > 1 else "")
        if self.fmt == "csv":
            cols = ["path", "label", "probability"]
            for i in range(2, self.k + 1):
                cols += [f"label_{i}", f"probability_{i}"]
            return self._csv(cols + ["refused", "error"])
        return None

    def row(self, pred: Prediction) -> str | None:
        if self.fmt == "json":
            return json.dumps(pred.to_dict())
        if self.fmt == "csv":
            if not pred.ok:
                return self._csv([pred.path, "", ""] + ["", ""] * (self.k - 1) + ["", pred.error or ""])
            cells = [pred.path]
            for label, p in pred.top_k[: self.k]:
                cells += [label, f"{p:.6f}"]
            cells += ["", ""] * (self.k - len(pred.top_k))
            if pred.refused:  # the first label cell stays empty: no answer; the guesses follow
                cells[1] = ""
            return self._csv(cells + [pred.refused or "", ""])
        if not pred.ok:
            return None  # the table lists what was classified; errors go to stderr
        label = REFUSED if pred.refused else str(pred.label)
        line = f"{pred.path:<{self.width}}  {label!s:<{self.label_width}} {pred.probability:>6.3f}"
        if self.k > 1:
            line += "  " + "  ".join(f"{label} {p:.3f}" for label, p in pred.top_k)
        elif pred.refused and pred.top_k:  # the probability is the best guess's: say which it is
            line += f"  (best guess {pred.top_k[0][0]})"
        return line

    @staticmethod
    def _csv(cells: list[str]) -> str:
        import csv  # only --csv needs it

        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(cells)
        return buf.getvalue()
