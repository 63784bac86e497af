"""cnnx: train a CNN, export it with proof of parity, run it on a CPU-only device."""

__version__ = "0.1.0"
