"""The demo never prints a credential: passwords in the URLs and DSNs it shows become ``***``."""

from __future__ import annotations

import pytest

from devstack.demo import redact, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://user:pass@host/db", "postgresql://user:***@host/db"),
    ("postgresql://user:p%40ss:w@db.internal:5432/prod?sslmode=require",
     "postgresql://user:***@db.internal:5432/prod?sslmode=require"),
    ("postgresql://user:p@ss@host:5432/db", "postgresql://user:***@host:5432/db"),  # an unescaped @ too
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("postgresql://host/db?user=me&password=s3cret", "postgresql://host/db?user=me&password=***"),
    ("https://api.example?apiKey=k1&token=abc&page=2", "https://api.example?apiKey=***&token=***&page=2"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
    ("127.0.0.1:9092", "127.0.0.1:9092"),
])
def test_credentials_in_urls_are_redacted_and_the_rest_kept(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_a_line_are_redacted() -> None:
    line = "binance   https://trader:hunter2@proxy.example:8443/api (from BINANCE_BASE_URL)"
    assert redact(line) == "binance   https://trader:***@proxy.example:8443/api (from BINANCE_BASE_URL)"
    assert "hunter2" not in redact("connect failed: redis://:hunter2@10.0.0.1:6379/0, retrying")
