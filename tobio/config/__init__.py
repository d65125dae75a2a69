"""Static configuration: YAML files validated by pydantic, with errors that name file, line and field."""

from tobio.config.schema import KernelConfig, ModelSpec, load_kernel_config
from tobio.config.validate import validate
from tobio.config.yamlfile import SourceMap, load_data_yaml, load_yaml

__all__ = ["KernelConfig", "ModelSpec", "SourceMap", "load_data_yaml", "load_kernel_config", "load_yaml", "validate"]
