"""``python -m cnnx``."""

import importlib.util
import sys
from pathlib import Path


def _this_package() -> None:
    """Make ``cnnx`` this package, not a folder named ``cnnx`` in the working directory.

    Python puts the working directory first on its path; run from the parent of a clone (a folder
    holding a folder named ``cnnx``), ``import cnnx`` finds that folder as an empty namespace
    package before an editable install's finder is asked, and every ``cnnx.__version__`` fails.
    """
    if getattr(sys.modules.get("cnnx"), "__file__", None) is not None:
        return
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("cnnx", here / "__init__.py", submodule_search_locations=[str(here)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cnnx"] = module
    spec.loader.exec_module(module)


_this_package()

from cnnx.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
