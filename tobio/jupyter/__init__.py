"""Tobio in IPython and Jupyter: the `%tobio` magic, sharing one kernel per Python process."""

from tobio.jupyter.chat import ask
from tobio.jupyter.chatview import ChatView
from tobio.jupyter.session import close_kernel, configure, get_kernel

__all__ = ["ChatView", "ask", "close_kernel", "configure", "get_kernel"]
