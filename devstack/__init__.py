"""Developer tooling: the embedded stack, the demo, worker processes and signal mixes.

Production code (schemas, execution, adapters, streams, agents) never imports this package."""
