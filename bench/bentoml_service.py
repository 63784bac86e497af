"""The BentoML service a user would write for a cnnx ONNX file: the "bentoml" server of
bench/serve_load.py, which starts it as `bentoml serve bentoml_service:Digits` from this folder.

It does what the plain FastAPI endpoint there does (bench/plain_model.py: Pillow grey, resize,
normalise; one onnxruntime call with one thread per request; softmax), as a BentoML 1.4 service
whose one argument is the image itself, so a client posts the PNG bytes as they are (Content-Type
image/png). The model and its mean, std and size come from the environment (serve_load.py
reads them from the model's spec): BentoML's environment need not have cnnx installed.
"""

import os

import bentoml
import plain_model  # beside this file
from PIL import Image

MODEL = os.environ["CNNX_BENTO_MODEL"]
MEAN, STD = float(os.environ["CNNX_BENTO_MEAN"]), float(os.environ["CNNX_BENTO_STD"])
SIZE = int(os.environ["CNNX_BENTO_SIZE"])


@bentoml.service(workers=int(os.environ.get("CNNX_BENTO_WORKERS", "1")))
class Digits:
    def __init__(self) -> None:
        self.session = plain_model.session(MODEL)

    @bentoml.api(route="/predict")
    def predict(self, image: Image.Image, /) -> dict:
        return plain_model.classify(self.session, image, MEAN, STD, SIZE)
