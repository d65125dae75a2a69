"""The `web` module: `web serve|stop|status` from the shell, `%tobio`, or scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from tobio.commands import Arg, Context, Result
from tobio.errors import CommandError, TobioError
from tobio.modules import Module

if TYPE_CHECKING:
    from tobio.kernel import Kernel


class WebSettings(BaseModel):
    """`settings: {web: {...}}` in kernel.yaml."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    default_agent: str | None = None  # the agent the page opens on; unset: the first persona spawned


class WebModule(Module):
    """The barebones web UI (tornado and a small page of its own), served from this process."""

    name = "web"
    description = "A chat web page: pick an agent, chat, see its mood, memories and threads."
    Settings = WebSettings

    async def module_init(self, kernel: Kernel) -> None:
        self.server: Any = None
        self.url = ""
        group = kernel.commands.group("web", "The web UI: a chat page served by this kernel.")

        @group.command("serve", Arg("--port", type=int, default=5006, help="TCP port"),
                       Arg("--address", default="127.0.0.1", help="bind address (other than loopback needs --token)"),
                       Arg("--token", help="password for the page (a login page); required off loopback. "
                                           "$TOBIO_WEB_TOKEN keeps it out of the shell's history"),
                       Arg("--allow-host", default="", metavar="NAMES",
                           help="more host names the page answers to, comma-separated (loopback and --address always)"),
                       Arg("--allow-origin", default="", metavar="ORIGINS",
                           help="more origins allowed to open the page's websocket, comma-separated (https://host:port)"),
                       Arg("--tls-cert", metavar="FILE", complete="file",
                           help="serve over HTTPS with this certificate (PEM); login cookies are then Secure"),
                       Arg("--tls-key", metavar="FILE", complete="file",
                           help="the certificate's private key (PEM), unless it is in --tls-cert"),
                       Arg("--wait", flag=True, help="keep serving until Ctrl-C (for `tobio-shell -c`)"),
                       agents="people")
        async def serve_(ctx: Context, port: int, address: str, token: str | None, allow_host: str,
                         allow_origin: str, tls_cert: str | None, tls_key: str | None, wait: bool) -> Result:
            """Serve the chat page in the background (the shell stays usable), or until Ctrl-C with --wait."""
            import asyncio

            from tobio.web.serve import serve

            if self.server is not None:
                raise CommandError(f"already serving on {self.url} (`web stop` first)")
            try:
                self.server = await asyncio.to_thread(serve, ctx.kernel, address, port, token,
                                                      allow_hosts=[allow_host], allow_origins=[allow_origin],
                                                      certfile=tls_cert, keyfile=tls_key)
            except TobioError:
                raise
            except Exception as exc:  # the kernel would log the command line, token and all
                raise CommandError(f"web serve: {type(exc).__name__}: {exc}") from None
            self.url = self.server.url
            if wait:
                ctx.emit(f"serving Tobio on {self.url} (Ctrl-C stops)\n")
                try:
                    await asyncio.Event().wait()
                finally:
                    self.stop_server()
            return Result(text=f"serving Tobio on {self.url}" + (" (password: the token)" if self.server.auth else ""))

        @group.command("stop", agents="people")
        async def stop(ctx: Context) -> Result:
            """Stop serving the web page."""
            if self.server is None:
                raise CommandError("not serving (see `web serve`)")
            self.stop_server()
            return Result(text="stopped")

        @group.command("status", agents="people")
        def status(ctx: Context) -> Result:
            """Where the page is served, if it is."""
            return Result(text=f"serving on {self.url}" if self.server is not None else "not serving")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def module_exit(self, kernel: Kernel) -> None:
        self.stop_server()
