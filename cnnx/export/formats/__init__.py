"""The export formats, one module each, dispatched from ``FORMATS``; no format is named anywhere else.

Every module has the same shape: ``SUFFIX`` (the file's ending), ``METHODS`` (ways to make the
file, tried in order until one passes the parity gate), ``export(model, spec, path, **options)
-> Path`` and ``load(path, threads)`` returning an object with ``run``, ``spec``, ``signature``
and ``write_spec``. A format built from another one's file names it in ``REQUIRES``. Its
tolerances live in ``cnnx.export.parity.GATES`` under the same name.
"""

from __future__ import annotations

from types import ModuleType

from cnnx.export.formats import onnx_fp32, onnx_int8, torchscript

FORMATS: dict[str, ModuleType] = {"onnx": onnx_fp32, "torchscript": torchscript, "onnx-int8": onnx_int8}
