"""Import a package that only some zoo helpers need, with an error that says how to get it."""

from __future__ import annotations

import importlib
from types import ModuleType

#: Which ``pip install`` brings each optional package.
_INSTALL = {
    "sklearn": "pip install lrp_tutor[data]   (scikit-learn)",
    "skimage": "pip install lrp_tutor[data]   (scikit-image)",
    "mlxtend": "pip install mlxtend   (part of lrp_tutor[dev])",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming ``purpose`` and the install command.

    >>> require("math", "square roots").sqrt(4.0)
    2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        how = _INSTALL.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise ImportError(
            f"{purpose} needs the optional package '{module}', which is not installed. "
            f"Install it with: {how}"
        ) from error
