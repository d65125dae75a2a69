"""`tobio web` and `web serve` inputs: each bad one is one clear line, never a traceback or a wide-open bind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from test_web import free_port

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.web.cli import main
from tobio.web.hosts import allowed_hosts, allowed_origins, host_allowed, is_loopback
from tobio.web.serve import TOKEN_ENV, serve

SECRET_LOOKING = "hunter2-but-longer-than-eight"


@pytest.mark.parametrize("address", ["", " ", "0.0.0.0", "::", "[::]", "192.168.1.5", "example.com",
                                     "localhost.evil.example", "127.0.0.1.nip.io"])
def test_these_are_not_loopback(address: str) -> None:
    assert is_loopback(address) is False


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_these_are_loopback(address: str) -> None:
    assert is_loopback(address) is True


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run `tobio ARGV`; it must fail with exactly one line on stderr and nothing on stdout."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's way out
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code not in (0, None), err
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, says", [
    (["web", "--address", ""], "--address is empty"),
    (["web", "--address", "   "], "--address is empty"),
    (["web", "--address", "bad host"], "is not an IP address or host name"),
    (["web", "--address", "http://x/"], "is not an IP address or host name"),
    (["web", "--port", "0"], "--port 0 is out of range (1-65535)"),
    (["web", "--port", "-1"], "--port -1 is out of range"),
    (["web", "--port", "70000"], "--port 70000 is out of range"),
    (["web", "--port", "99999999999999999999"], "out of range"),
    (["web", "--port", "abc"], "invalid int value"),
    (["web", "--address", "0.0.0.0"], "serving on 0.0.0.0 needs --token"),
    (["web", "--address", "0.0.0.0", "--token", "short"], "--token is too short"),
    (["web", "--allow-host", "http://"], "is not a host name"),
    (["web", "--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                    argv: list[str], says: str) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert says in one_line_error(capsys, argv)


def test_a_short_token_is_refused_without_repeating_it(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["web", "--address", "0.0.0.0", "--token", "pw-1234"])
    assert "pw-1234" not in err


@pytest.fixture
def kernel(duckdb_url: str) -> Iterator[Kernel]:
    k = Kernel(KernelConfig(modules=["scripted", "web"]), database=duckdb_url).start()
    try:
        yield k
    finally:
        k.close()


@pytest.mark.slow
def test_a_port_in_use_is_one_line(kernel: Kernel) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TobioError, match=rf"^cannot serve on 127.0.0.1:{port}: .*in use"):
            serve(kernel, "127.0.0.1", port)
        with pytest.raises(TobioError, match=rf"^cannot serve on 127.0.0.1:{port}: .*in use"):
            kernel.run(f"web serve --port {port}")  # the shell's command: the same one line
    assert kernel.run("web status").text == "not serving"


def test_an_unknown_address_is_one_line(kernel: Kernel) -> None:
    with pytest.raises(TobioError, match=r"^cannot serve on no-such-host.invalid:\d+: ") as caught:
        serve(kernel, "no-such-host.invalid", free_port(), SECRET_LOOKING)
    assert "\n" not in str(caught.value) and SECRET_LOOKING not in str(caught.value)


def test_web_serve_command_checks_its_inputs(kernel: Kernel) -> None:
    with pytest.raises(TobioError, match="--address is empty"):
        kernel.run("web serve --address ''")
    with pytest.raises(TobioError, match="--port 0 is out of range"):
        kernel.run("web serve --port 0")
    port = free_port()
    shown = kernel.run(f"web serve --port {port} --token {SECRET_LOOKING} --allow-host chat.example")
    try:
        assert shown.text == f"serving Tobio on http://127.0.0.1:{port}/ (password: the token)"
        assert SECRET_LOOKING not in shown.text
        assert kernel.run("web status").text == f"serving on http://127.0.0.1:{port}/"
    finally:
        kernel.run("web stop")


def test_the_token_can_come_from_the_environment(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET_LOOKING)  # off the command line, out of `ps` and shell history
    server = serve(kernel, "127.0.0.1", free_port())
    try:
        assert server.auth
    finally:
        server.stop()


def test_allow_lists() -> None:
    hosts = allowed_hosts("192.168.1.5", ["chat.example,https://Proxy.Example:8443"])
    assert hosts == {"localhost", "127.0.0.1", "::1", "192.168.1.5", "chat.example", "proxy.example"}
    assert allowed_hosts("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}  # a wildcard is not a name
    assert host_allowed("chat.example:5006", hosts) and host_allowed("localhost:5006", hosts)
    assert not host_allowed("[::1]:5006", hosts)  # Panel cannot serve a page under an IPv6 literal: refused, not a 500
    assert not host_allowed("evil.example", hosts) and not host_allowed("", hosts)
    assert not host_allowed("chat.example.evil.example", hosts) and not host_allowed("evil.example#@chat.example", hosts)
    origins = allowed_origins({"localhost", "::1"}, 5006, ["https://proxy.example:8443"])
    assert origins == ["localhost:5006", "proxy.example:8443"]
