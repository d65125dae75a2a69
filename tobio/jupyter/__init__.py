"""Tobio in IPython and Jupyter: the `%tobio` magic, sharing one kernel per Python process."""

from tobio.jupyter.session import close_kernel, configure, get_kernel

__all__ = ["close_kernel", "configure", "get_kernel"]
