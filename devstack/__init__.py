"""Developer tooling: the embedded stack, the demo, worker processes and signal mixes. Production code never imports this package."""
