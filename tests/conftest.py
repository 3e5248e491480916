"""Shared fixtures live in tests/fixtures/, one module per real part (storage, kafka, venues)."""

pytest_plugins = [
    "tests.fixtures.storage",
    "tests.fixtures.kafka",
    "tests.fixtures.binance",
]


# Faust's data directories (SUPERINTEL_DATA_DIR, streams/settings.py) of every worker a test starts,
# in-process or as a child process (they inherit the environment): one temporary folder per test
# run, removed after it, instead of si-test-*-data folders left in the directory pytest ran in.
_DATA_DIR_CREATED: list[str] = []


def pytest_configure(config: object) -> None:
    import os
    import tempfile

    if "SUPERINTEL_DATA_DIR" not in os.environ:
        os.environ["SUPERINTEL_DATA_DIR"] = path = tempfile.mkdtemp(prefix="si-test-data-")
        _DATA_DIR_CREATED.append(path)


def pytest_unconfigure(config: object) -> None:
    import os
    import shutil

    for path in _DATA_DIR_CREATED:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get("SUPERINTEL_DATA_DIR") == path:
            del os.environ["SUPERINTEL_DATA_DIR"]
    _DATA_DIR_CREATED.clear()
