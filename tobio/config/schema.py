"""The kernel's own configuration (configs/kernel.yaml) and model bundles (configs/models.yaml)."""

from __future__ import annotations

import glob
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tobio.config.validate import validate
from tobio.config.yamlfile import SourceMap, load_yaml

if TYPE_CHECKING:
    from pydantic import TypeAdapter


def _relative_to_file(value: Path, info: ValidationInfo) -> Path:
    """Paths in a config file are relative to that file, as includes are."""
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value


RelPath = Annotated[Path, AfterValidator(_relative_to_file)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=64)]


@cache
def name_adapter() -> TypeAdapter[str]:
    """`Name` for a name given outside a model (`--name`, a fork's): built on first use, since building
    it (and importing pydantic's TypeAdapter) costs a start that checks no such name a few ms."""
    from pydantic import TypeAdapter

    return TypeAdapter(Name)


class Frozen(BaseModel):
    """Config is immutable once loaded: changing behaviour means changing the file.

    Validators are built when first used, not at import: a start imports every agent and provider type's
    Config (and their bases) but validates only the few it has (a one-shot command pays for each one)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ModelSpec(Frozen):
    """A model bundle: which provider, which model, what for, with which parameters."""

    provider: str
    model: str = ""
    purpose: Literal["chat", "json", "summarize", "classify", "embed"] = "chat"
    params: dict[str, Any] = Field(default_factory=dict)
    path: RelPath | None = None
    description: str = ""


class KernelConfig(Frozen):
    """configs/kernel.yaml: the database, which modules to load, which agents to spawn."""

    database: str | None = Field(None, description="SQLAlchemy URL; empty means DuckDB in the data dir")
    modules: list[Name] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list, description="agent files or globs, relative to this file")
    channels: list[Name] = Field(default_factory=list)
    providers: dict[Name, dict[str, Any]] = Field(default_factory=dict, description="model back ends by name")
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    settings: dict[Name, dict[str, Any]] = Field(
        default_factory=dict, description="per-module settings (`settings: {emotion: {half_life_s: 300}}`), validated by each module"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    group_commit_ms: float = Field(2.0, ge=0, le=1000, description="longest wait to batch writes")
    tune_gc: bool = Field(
        True, description="freeze boot-time objects and collect old generations less often (transport allocates a lot)"
    )
    cluster: dict[str, Any] | None = Field(None, description="share PostgreSQL with other kernels (tobio/cluster/config.py)")
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("database")
    @classmethod
    def _usable_url(cls, value: str | None) -> str | None:
        """A bad URL is caught here, with the file and line, rather than by the driver at start-up."""
        if value is None or not value.strip():
            return None
        from tobio.config.database_url import check_database_url
        from tobio.errors import ConfigError

        try:
            return check_database_url(value, "URL")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("URL: ")) from None

    def agent_files(self) -> list[Path]:
        """Agent files named by `agents:`, globs expanded relative to the kernel config."""
        files: list[Path] = []
        for pattern in self.agents:
            path = Path(pattern).expanduser()
            if not path.is_absolute():
                path = self.base_dir / path
            matches = sorted(Path(p) for p in glob.glob(str(path)))
            files.extend(matches if matches or glob.has_magic(str(path)) else [path])
        return files


def load_kernel_config(path: str | Path | None) -> KernelConfig:
    """Load kernel.yaml, or the built-in defaults when `path` is None."""
    if path is None:
        return KernelConfig()
    data, smap = load_yaml(path)
    if not isinstance(data, dict):
        from tobio.errors import ConfigError

        raise ConfigError(f"{path}:1: expected a mapping of settings, got {type(data).__name__}")
    data = {**data, "base_dir": Path(path).resolve().parent}
    config = validate(KernelConfig, data, smap)
    for name, entry in config.providers.items():
        check_provider_config(name, entry, smap.sub(("providers", name)))
    return config


def check_provider_config(name: str, entry: dict[str, Any], smap: SourceMap) -> Any:
    """Validate one `providers:` entry against its type's Config; errors point at the file and line.

    A type no installed package provides may be added by a module (the PROVIDER_TYPE hook): it is
    checked when a model on the provider is first used, whatever the order of `modules:`."""
    from tobio.errors import ConfigError
    from tobio.providers import provider_type

    kind = entry.get("type")
    if not kind or not isinstance(kind, str):
        raise ConfigError(f"{smap.where(())}: field 'providers.{name}.type': field required (a provider type, e.g. openai)")
    cls = provider_type(kind)
    return validate(cls.Config, entry, smap) if cls is not None else None


__all__ = ["Frozen", "KernelConfig", "ModelSpec", "Name", "RelPath", "SourceMap", "load_kernel_config"]
