"""Where one image's time goes in the runtime, step by step, in-process (what `cnnx serve` pays per image).

    python bench/predict_steps.py [--model cnnx/models/mnist.onnx] [--image cnnx/samples/digits/mnist-7.png]

Per image, median of --repeats timings of a batch of --batch copies of one 28x28 PNG, one
onnxruntime thread: decoding from a file path (`cnnx infer`), decoding from bytes in memory
(`EncodedImage`, what the server does with an upload), decode plus the model's preprocessing
recipe, the model alone (`Classifier.answers` on the pixels), and `Classifier.predict` on the
in-memory images from start to end. The steps are timed one after another, rounds interleaved.
Prints a table and writes bench/results/predict_steps.json.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

import numpy as np  # noqa: E402

from cnnx.core.machine import machine_info  # noqa: E402
from cnnx.runtime import Classifier, EncodedImage  # noqa: E402
from cnnx.runtime.image import open_image, preprocess_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "cnnx" / "models" / "mnist.onnx")
    ap.add_argument("--image", type=Path, default=REPO / "cnnx" / "samples" / "digits" / "mnist-7.png")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    clf = Classifier(args.model, threads=1)
    data = args.image.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.batch):
            paths.append(Path(folder) / f"{i}.png")
            paths[-1].write_bytes(data)
        names = [str(p) for p in paths]
        memory = [EncodedImage(f"{i}.png", data) for i in range(args.batch)]
        pixels = np.stack([p for p in preprocess_batch(memory, clf.spec) if isinstance(p, np.ndarray)])
        steps: dict[str, Callable[[], object]] = {
            "decode from a file path": lambda: [open_image(p) for p in names],
            "decode from memory (EncodedImage)": lambda: [open_image(m) for m in memory],
            "decode from memory + recipe": lambda: preprocess_batch(memory, clf.spec),
            "model (Classifier.answers)": lambda: clf.answers(pixels),
            "Classifier.predict from memory": lambda: clf.predict(memory),
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        for work in steps.values():
            work()  # warm-up
        for _ in range(args.repeats):
            for name, work in steps.items():
                start = time.perf_counter()
                work()
                times[name].append((time.perf_counter() - start) / args.batch * 1e6)
    rows = {name: round(statistics.median(t), 1) for name, t in times.items()}
    print(f"{'step (per image, batch of ' + str(args.batch) + ')':<44} {'us':>8}")
    for name, us in rows.items():
        print(f"{name:<44} {us:>8.1f}")
    result = {
        "machine": machine_info(),
        "command": " ".join(["python", "bench/predict_steps.py", *sys.argv[1:]]),
        "model": str(args.model),
        "image": str(args.image),
        "batch": args.batch,
        "repeats": args.repeats,
        "us_per_image": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predict_steps.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
