"""What a user would write around onnxruntime to classify one image: the work of bench/serve_load.py's
plain FastAPI endpoint and of its BentoML service (bench/bentoml_service.py), one definition for both.
numpy, Pillow and onnxruntime only: BentoML's environment has no cnnx.
"""

from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image


def session(model: str) -> ort.InferenceSession:
    """An onnxruntime session on one thread, as each server process of the benchmark has."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def classify(s: ort.InferenceSession, image: Image.Image, mean: float, std: float, size: int) -> dict[str, Any]:
    """Grey, resize to the input size, normalise, one onnxruntime call, softmax: the best label."""
    x = (np.asarray(image.convert("L").resize((size, size)), np.float32) / 255 - mean) / std
    logits = s.run(None, {"input": x[None, None]})[0][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    k = int(p.argmax())
    return {"label": str(k), "probability": float(p[k])}
