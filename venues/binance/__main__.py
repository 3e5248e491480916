"""``python -m venues.binance`` runs the simulator too (same as ``python -m venues.binance.cli``)."""

from venues.binance.cli import main

raise SystemExit(main())
