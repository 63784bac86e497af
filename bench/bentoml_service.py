"""The BentoML service a user would write for a cnnx ONNX file: the "bentoml" server of
bench/serve_load.py, which starts it as `bentoml serve bentoml_service:Digits` from this folder.

It does what the plain FastAPI endpoint there does (Pillow: grey, resize, normalise; one
onnxruntime call with one thread per request; softmax), as a BentoML 1.4 service whose one
argument is the image itself, so a client posts the PNG bytes as they are (Content-Type
image/png). The model and its mean, std and size come from the environment (serve_load.py
reads them from the model's spec): BentoML's environment need not have cnnx installed.
"""

import os

import bentoml
import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL = os.environ["CNNX_BENTO_MODEL"]
MEAN, STD = float(os.environ["CNNX_BENTO_MEAN"]), float(os.environ["CNNX_BENTO_STD"])
SIZE = int(os.environ["CNNX_BENTO_SIZE"])


@bentoml.service(workers=int(os.environ.get("CNNX_BENTO_WORKERS", "1")))
class Digits:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])

    @bentoml.api(route="/predict")
    def predict(self, image: Image.Image, /) -> dict:
        x = (np.asarray(image.convert("L").resize((SIZE, SIZE)), np.float32) / 255 - MEAN) / STD
        logits = self.session.run(None, {"input": x[None, None]})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        k = int(p.argmax())
        return {"label": str(k), "probability": float(p[k])}
