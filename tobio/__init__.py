"""Tobio: a bottom-up cognitive architecture for building artificial people.

    from tobio.kernel import Kernel
    with Kernel("configs/kernel.yaml") as kernel:
        print(kernel.run("agent ls"))

In IPython/Jupyter: `%load_ext tobio`, then `%tobio agent ls`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext tobio`: registers the `%tobio` / `%%tobio` magics."""
    from tobio.jupyter.magics import TobioMagics

    ipython.register_magics(TobioMagics)
