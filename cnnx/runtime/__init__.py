"""Edge runtime: onnxruntime, Pillow and numpy only; never imports torch."""
