"""The toolkit every venue simulator is built on (Binance now; TWS and MT4 next).

* ``prices``: ``PricePath`` (seeded random walk or replayed series) and the ``PriceBook`` it moves;
* ``faults``: the one fault model (``Faults.decide`` per request or connection), HTTP and TCP;
* ``stats``: ``SimStats``, the counters tests read and ``GET /_sim/stats`` serves;
* ``control``: the ``/_sim`` control endpoints;
* ``http_server`` / ``tcp_server``: a venue's protocol behind the faults, stats and control;
* ``cli``: the shared flags (``--latency --fail-rate --lose-rate --seed``, server, price path)
  and the standalone runner.
"""

from venues.common.control import AppServer, Controlled, ControlServer, add_control_routes
from venues.common.faults import Fault, Faults, Op
from venues.common.http_server import HttpVenueServer, Route
from venues.common.prices import PriceBook, PricePath, floor_to
from venues.common.stats import SimStats
from venues.common.tcp_server import TcpVenueServer

__all__ = [
    "AppServer",
    "ControlServer",
    "Controlled",
    "Fault",
    "Faults",
    "HttpVenueServer",
    "Op",
    "PriceBook",
    "PricePath",
    "Route",
    "SimStats",
    "TcpVenueServer",
    "add_control_routes",
    "floor_to",
]
