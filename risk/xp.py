"""Array-module switch: the same risk code runs on NumPy and on CuPy arrays.

Functions in risk/ call :func:`array_module` on their inputs and use the module it
returns, so a CuPy array in means CuPy kernels and a CuPy array out, with no copy
to the host. Special functions (the normal CDF) come from SciPy or from
``cupyx.scipy.special`` to match.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def _is_cupy(value: Any) -> bool:
    return type(value).__module__.split(".", 1)[0] == "cupy"


def array_module(*values: Any) -> ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for value in values:
        if _is_cupy(value):
            import cupy  # only imported when a CuPy array is actually passed in

            return cupy
    return np


def special_module(xp: ModuleType) -> ModuleType:
    """The ``scipy.special``-like module (``ndtr``, ``erfc``) matching ``xp``."""
    if xp is np:
        import scipy.special

        return scipy.special
    import cupyx.scipy.special

    return cupyx.scipy.special

