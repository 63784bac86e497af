"""Torch-free pieces every area uses: the model spec, errors, the file contract, atomic writes,
IDX files, ONNX file reading, the machine's cores and timers, plots. Imports nothing heavy."""
