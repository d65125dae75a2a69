"""kernel.yaml's `cluster:` section: this kernel shares its PostgreSQL with other kernels."""

from __future__ import annotations

from pydantic import Field

from tobio.config.schema import Frozen, Name


class ClusterConfig(Frozen):
    """`cluster: {lease_s: 10}` turns a kernel on PostgreSQL into one of several sharing the agents."""

    lease_s: float = Field(10.0, gt=0.2, le=3600, description="a kernel silent this long loses its agents to the others")
    heartbeat_s: float | None = Field(None, gt=0, description="how often leases are renewed (default: a third of lease_s)")
    scan_s: float = Field(1.0, gt=0, le=600, description="how often unhandled pushes are read, for notifications missed")
    group: Name | None = Field(None, description="this kernel's group, for agents placed in one")
    placement: dict[Name, Name] = Field(
        default_factory=dict, description="agent name -> the group of kernels it runs in (others run anywhere)")

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3
