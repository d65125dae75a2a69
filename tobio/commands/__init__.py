"""Commands: one tree of groups and commands that every front end reads."""

from tobio.commands.context import Context
from tobio.commands.parse import Invocation, resolve, split_words
from tobio.commands.result import Result, table
from tobio.commands.tree import Arg, Command, Group, Node

__all__ = ["Arg", "Command", "Context", "Group", "Invocation", "Node", "Result", "resolve", "split_words", "table"]
