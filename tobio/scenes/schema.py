"""Scene files (configs/scenes/*.yaml): who is in it, where, how it opens, how long it runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tobio.config.schema import Name, RelPath
from tobio.scenes.floor import Policy


class Opening(BaseModel):
    """The first line; `speaker` is a member's name, or empty for the narrator (the kernel)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    text: str
    speaker: str | None = None


class SceneConfig(BaseModel):
    """A multi-agent scene."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    name: Name
    channel: Name
    agents: list[RelPath] = Field(min_length=2, description="agent files; spawned if not running")
    opening: Opening
    turns: int = Field(10, ge=1, le=10_000, description="agent replies before the scene ends")
    policy: Policy = "round_robin"
    timeout_s: float = Field(600.0, gt=0, description="give up if the scene stalls this long")
