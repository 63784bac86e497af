"""What the tests share: the real CLI in a subprocess, the shipped mini MNIST, a torch reference,
digit files. Fixtures are in tests/conftest.py; generated image sets in ``tests.support.images``;
the seed scripts' own network classes in ``tests.support.seed_nets``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnx.core.contract import normalise
from cnnx.core.spec import ModelSpec

REPO = Path(__file__).resolve().parent.parent.parent
# 1,000 training and 500 test digits of the real MNIST, shipped in the package (cnnx/samples/mnist)
MINI_MNIST = REPO / "cnnx" / "samples" / "mnist"
# what an MNIST model's spec says, for tests of the runtime's recipes without a model file
DIGIT_SPEC = ModelSpec(
    arch="t",
    input_shape=(1, 28, 28),
    color="L",
    mean=(0.1307,),
    std=(0.3081,),
    classes=[str(i) for i in range(10)],
    preprocess="mnist-digit",
)


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run the real `cnnx` command in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnx", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cnnx {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def cnnx_without(blocked: str, *args: str) -> subprocess.CompletedProcess:
    """`cnnx ARGS` in a process where ``blocked`` cannot be imported, as on a device without that extra;
    prints the heavy modules that got loaded on its last stdout line."""
    code = (
        "import json, sys\n"
        f"sys.modules[{blocked!r}] = None  # import raises ImportError, as when it is not installed\n"
        "from cnnx.cli import main\n"
        f"try:\n    main({list(args)!r})\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print(json.dumps(sorted(m for m, v in sys.modules.items() if v and m.split('.')[0] in ('torch', 'onnx'))))\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def infer_json(model: Path, *images: Path) -> list[dict[str, Any]]:
    """`cnnx infer IMAGES -m MODEL --json --top-k 3`, one dict per image."""
    proc = run_cli("infer", *map(str, images), "-m", str(model), "--json", "--top-k", "3", check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def torch_probs(checkpoint: Path, x_uint8: Any) -> np.ndarray:
    """Softmax of a cnnx checkpoint's model on uint8 (N, C, H, W) pixels (a tensor), normalised with its spec."""
    import torch

    from cnnx.train.models import build_model

    state = torch.load(checkpoint, weights_only=True)
    spec = state["spec"]
    model = build_model(spec["arch"], len(spec["classes"]), tuple(spec["input_shape"])).eval()
    model.load_state_dict(state["model"])
    x = torch.from_numpy(normalise(x_uint8.numpy(), spec["mean"], spec["std"]))
    with torch.no_grad():
        return torch.softmax(model(x), 1).numpy()


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: Path) -> list[Path]:
    """One PNG per digit, folder/<index>_<label>.png, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        paths.append(folder / f"{i:04d}_{int(label)}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def with_spec(model: Path, folder: Path, **fields: Any) -> Path:
    """A copy of the ONNX ``model`` in ``folder`` with ``fields`` set in its cnnx spec (the
    ``cnnx.<field>`` metadata, JSON values), e.g. a calibration or a refusal threshold."""
    import onnx

    proto = onnx.load(str(model))
    for key, value in fields.items():
        entries = [p for p in proto.metadata_props if p.key == "cnnx." + key]
        entry = entries[0] if entries else proto.metadata_props.add(key="cnnx." + key)
        entry.value = json.dumps(value)
    path = Path(folder) / "honest.onnx"
    onnx.save(proto, str(path))
    return path


def scribble_png(folder: Path) -> Path:
    """Ink that is no digit, as a user would photograph it: a thick zig-zag, dark on light paper."""
    from PIL import ImageDraw

    img = Image.new("L", (90, 90), 230)
    ImageDraw.Draw(img).line([(10, 20), (80, 25), (15, 70), (85, 75)], fill=20, width=6)
    path = Path(folder) / "scribble.png"
    img.save(path)
    return path


def export_with_nudged_bias(
    module: Any, fmt: str, checkpoint: Path, out: Path, monkeypatch: Any
) -> tuple[Any, list[str]]:
    """`cnnx export CHECKPOINT --format FMT --out OUT` (in-process) with the format's ``export`` made from a
    copy of the model whose first output bias is 1e-3 off (10x the fp32 tolerance; top-1 mostly unchanged):
    (the click result, the names left in OUT, which held keep.txt before). A format made from the torch
    module only; the gate must refuse the file and leave nothing behind."""
    import copy

    import torch
    from click.testing import CliRunner

    from cnnx.cli import main

    real_export = module.export
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def nudged(model: Any, spec: Any, path: Any, **options: Any) -> Any:
        changed = copy.deepcopy(model)
        with torch.no_grad():
            dict(changed.named_parameters())["head.bias"][0] += 1e-3
        return real_export(changed, spec, path, **options)

    monkeypatch.setattr(module, "export", nudged)
    result = CliRunner().invoke(main, ["export", str(checkpoint), "--format", fmt, "--out", str(out)])
    return result, sorted(p.name for p in out.iterdir())
