"""``python -m venues.tws`` runs the simulator too (same as ``python -m venues.tws.cli``)."""

from venues.tws.cli import main

raise SystemExit(main())
