"""The shell's history file, which never keeps a secret someone typed (`--api-key X`, a URL password)."""

from __future__ import annotations

from prompt_toolkit.history import FileHistory

from tobio.secrets import redact_command


class RedactingFileHistory(FileHistory):
    """prompt_toolkit's FileHistory, with credentials replaced before a line reaches the disk. The
    session's own up-arrow still has the line as typed; the file, and later sessions, do not."""

    def store_string(self, string: str) -> None:
        super().store_string(redact_command(string))
