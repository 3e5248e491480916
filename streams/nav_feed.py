"""``superintel nav feed``: NavQuotes from the venues' market data onto ``nav.quotes``.

The venues are the composition's (``streams/bootstrap.py``: the enabled plug-ins, each read from
its own environment prefix): the trust is priced by the venue whose market data covers its asset
class (IBKR for GBTC), the spot by the spot venue (Binance for BTC-USDT). Each quote is keyed by
its pair, so a pair's quotes stay ordered on one partition.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from execution.nav_feed import NavPairSpec, PricesByClass, nav_quotes
from streams.bootstrap import Bootstrap
from streams.settings import Settings
from streams.topics import NAV_QUOTES

log = logging.getLogger(__name__)


async def run_nav_feed(settings: Settings, spec: NavPairSpec, interval: float, count: int | None = None,
                       *, bootstrap: Bootstrap | None = None, topic: str = NAV_QUOTES) -> int:
    """Publish the pair's quotes every ``interval`` seconds (``count`` of them, or until
    cancelled); returns how many were published."""
    composition = bootstrap or Bootstrap(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0, acks="all")
    await producer.start()
    sent = 0
    try:
        venues = await composition.venues()
        prices = PricesByClass(venues.prices)
        async for quote in nav_quotes(spec, prices, prices, composition.clock, interval, count=count):
            await producer.send_and_wait(topic, key=quote.pair.encode(), value=quote.to_bytes())
            sent += 1
            print(quote.model_dump_json(), flush=True)
        return sent
    finally:
        await producer.stop()
        if bootstrap is None:
            await composition.close()
