"""Shared fixtures live in tests/fixtures/, one module per real part (storage, kafka, venues)."""

pytest_plugins = [
    "tests.fixtures.storage",
    "tests.fixtures.kafka",
    "tests.fixtures.binance",
]
