"""``python -m venues.mt4`` runs the simulator too (same as ``python -m venues.mt4.cli``)."""

from venues.mt4.cli import main

raise SystemExit(main())
