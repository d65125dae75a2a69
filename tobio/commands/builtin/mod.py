"""`mod ls|info|load|unload`: the module interface, like lsmod/modinfo/modprobe/rmmod."""

from __future__ import annotations

from tobio.commands import Arg, Context, Group, Result, table
from tobio.errors import ModuleError


def register(root: Group) -> None:
    mod = root.group("mod", "List, inspect, load and unload modules.")

    @mod.command("ls", Arg("--all", flag=True, help="include modules that are available but not loaded"),
                 agents="agents")
    def ls(ctx: Context, all: bool) -> Result:
        """List loaded modules (and available ones with --all)."""
        manager = ctx.kernel.modules
        manager.discover()
        names = sorted(manager.available) if all else list(manager.loaded)
        rows = []
        for name in names:
            cls = manager.available[name]
            deps = ", ".join(d.__name__ for d in cls.dependencies)
            users = ", ".join(manager.dependants(name)) if name in manager.loaded else ""
            rows.append((name, "loaded" if name in manager.loaded else "available", deps, users, cls.description))
        return table(["module", "status", "needs", "used by", "description"], rows)

    @mod.command("info", Arg("name", help="module name", complete="module"), agents="agents")
    def info(ctx: Context, name: str) -> Result:
        """Show a module's description, dependencies, where it comes from and what it registered."""
        manager = ctx.kernel.modules
        manager.discover()
        cls = manager.available.get(name)
        if cls is None:
            raise ModuleError(f"no module named '{name}' (see `mod ls --all`)")
        rows = [
            ("name", name),
            ("status", "loaded" if name in manager.loaded else "available"),
            ("class", f"{cls.__module__}.{cls.__qualname__}"),
            ("needs", ", ".join(d.__name__ for d in cls.dependencies) or "-"),
            ("core", "yes" if cls.core else "no"),
            ("description", cls.description),
        ]
        if cls.optional_dependencies:
            rows.insert(4, ("optional", ", ".join(d.__name__ for d in cls.optional_dependencies)))
        module = manager.loaded.get(name)
        if module is not None:  # what it added to the kernel: unloading removes exactly this
            kinds: dict[str, list[str]] = {}
            for kind, what in manager.registered_by(module):
                kinds.setdefault(kind, []).append(what)
            rows += [(f"{kind}s", "\n".join(items)) for kind, items in kinds.items()]
        return table(["field", "value"], rows)

    @mod.command("load", Arg("names", nargs="+", help="modules to load", complete="module"), agents="people")
    async def load(ctx: Context, names: list[str]) -> Result:
        """Load modules and whatever they depend on, in dependency order."""
        done = await ctx.kernel.modules.load(*names)
        return Result(text=f"loaded: {', '.join(done)}" if done else "already loaded")

    @mod.command(
        "unload",
        Arg("name", help="module to unload", complete="module"),
        Arg("--force", flag=True, help="unload the modules that depend on it first and stop what uses it (its agents, providers of its types)"),
        agents="people",
    )
    async def unload(ctx: Context, name: str, force: bool) -> Result:
        """Unload a module; refuses while others need it or use it, unless --force."""
        done = await ctx.kernel.modules.unload(name, force=force)
        return Result(text=f"unloaded: {', '.join(done)}")
