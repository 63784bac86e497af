"""Edge runtime: onnxruntime, Pillow and numpy only; never imports torch.

from cnnx.runtime import Classifier
Classifier("model.onnx").predict(["a.png"])[0].label
Classifier("model.onnx").predict(EncodedImage("upload.png", data))[0].label   # bytes, no file
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnx.runtime.predict import Classifier, EncodedImage, Prediction

__all__ = ["Classifier", "EncodedImage", "Prediction"]


def __getattr__(name: str) -> Any:
    # imported on first use, so `import cnnx.runtime.image` does not pay for onnxruntime
    if name in __all__:
        from cnnx.runtime import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'cnnx.runtime' has no attribute {name!r}")
