"""The NAV-arb agent's tables (schemas/sql/006_nav_arb.sql): pair state, observations, episodes.

Statements and the row conversions behind ``TimescaleStore``'s ``NavArbStore`` methods. A save is
one transaction: the pairs' new states, compared with the version the caller read (a pair whose
stored version moved fails the whole save with ``StaleNavState``, so a worker working from an
old state, a lagging cache or a partition it no longer owns, saves nothing), the observations and
the episode records. Spreads and z-scores are IEEE doubles in the core; they are stored as the
NUMERIC of their shortest round-trip text (``repr``), so reading a row back gives the same double.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from execution.nav_arb import (
    Decision,
    Episode,
    EpisodeRecord,
    PairWrite,
    SpreadRow,
    StaleNavState,
    StoredPair,
)
from schemas import Signal

LOAD_PAIRS = (
    "SELECT p.pair, p.version, CASE WHEN p.fingerprint = k.known THEN NULL ELSE p.state END AS state, "
    "CASE WHEN p.outbox_sent THEN NULL ELSE p.outbox END AS outbox "
    "FROM nav_pairs AS p JOIN unnest($1::text[], $2::text[]) AS k(pair, known) ON k.pair = p.pair"
)
UNSENT_OUTBOXES = "SELECT pair, version, state, outbox FROM nav_pairs WHERE NOT outbox_sent ORDER BY pair"
SAVE_PAIRS = (
    # expected = 0: a new pair, inserted unless a row appeared meanwhile; expected > 0: updated
    # only while the stored version is still the expected one. A NULL outbox keeps the stored one
    # (and whether it was sent); a new outbox is unsent until mark_nav_outbox_sent.
    "WITH w AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[]) "
    "AS w(pair, expected, episode, state, outbox, fingerprint)), "
    "inserted AS (INSERT INTO nav_pairs (pair, version, fingerprint, episode, state, outbox, outbox_sent) "
    "SELECT pair, 1, fingerprint, episode, state, COALESCE(outbox, '[]'::jsonb), outbox IS NULL FROM w "
    "WHERE expected = 0 ORDER BY pair ON CONFLICT (pair) DO NOTHING RETURNING pair), "
    "updated AS (UPDATE nav_pairs AS p SET version = w.expected + 1, fingerprint = w.fingerprint, "
    "episode = w.episode, state = w.state, "
    "outbox = COALESCE(w.outbox, p.outbox), outbox_sent = (w.outbox IS NULL AND p.outbox_sent), "
    "updated_at = now() FROM w WHERE p.pair = w.pair AND w.expected > 0 AND p.version = w.expected "
    "RETURNING p.pair) "
    "SELECT pair FROM inserted UNION ALL SELECT pair FROM updated"
)
INSERT_SPREADS = (
    "INSERT INTO nav_spreads (pair, ts, trust_price, nav, spot_price, spread, zscore, decision, episode, group_id) "
    "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[], "
    "$6::numeric[], $7::numeric[], $8::text[], $9::text[], $10::text[]) "
    "ON CONFLICT (pair, ts) DO NOTHING"
)
INSERT_EPISODES = (
    "INSERT INTO nav_episodes (pair, ts, group_id, previous, episode, direction, reason, legs) "
    "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::text[], $8::jsonb[])"
)
MARK_SENT = (
    "UPDATE nav_pairs AS p SET outbox_sent = true FROM unnest($1::text[], $2::bigint[]) AS s(pair, version) "
    "WHERE p.pair = s.pair AND p.version = s.version"
)
SPREADS_OF = (
    "SELECT pair, ts, trust_price, nav, spot_price, spread, zscore, decision, episode, group_id "
    "FROM nav_spreads WHERE pair = $1 ORDER BY ts"
)
EPISODES_OF = (
    "SELECT pair, ts, group_id, previous, episode, direction, reason, legs FROM nav_episodes "
    "WHERE pair = $1 ORDER BY id"
)


def exact(value: float | None) -> Decimal | None:
    """A double as the NUMERIC that reads back as the same double."""
    return None if value is None else Decimal(repr(value))


def _outbox(signals: Sequence[Signal] | None) -> str | None:
    return None if signals is None else json.dumps([s.model_dump(mode="json") for s in signals])


def _signals(raw: Any) -> tuple[Signal, ...]:
    items = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return tuple(Signal.model_validate(item) for item in items)


def _json(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


async def load_pairs(db: asyncpg.Pool | asyncpg.Connection, known: Mapping[str, str]) -> dict[str, StoredPair]:
    if not known:
        return {}
    pairs = sorted(known)
    rows = await db.fetch(LOAD_PAIRS, pairs, [known[p] for p in pairs])
    return {row["pair"]: StoredPair(version=row["version"],
                                    state=None if row["state"] is None else _json(row["state"]),
                                    outbox=() if row["outbox"] is None else _signals(row["outbox"]))
            for row in rows}


async def unsent_outboxes(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, StoredPair]:
    rows = await db.fetch(UNSENT_OUTBOXES)
    return {row["pair"]: StoredPair(row["version"], _json(row["state"]), _signals(row["outbox"])) for row in rows}


async def save(conn: asyncpg.Connection, writes: Sequence[PairWrite], spreads: Sequence[SpreadRow],
               episodes: Sequence[EpisodeRecord]) -> None:
    """Inside the caller's transaction: raises ``StaleNavState`` (rolling it back) if any pair's
    stored version is not the one its write expects."""
    if writes:
        ordered = sorted(writes, key=lambda w: w.pair)
        rows = await conn.fetch(SAVE_PAIRS, [w.pair for w in ordered], [w.expected for w in ordered],
                                [w.episode.value for w in ordered], [json.dumps(w.state) for w in ordered],
                                [_outbox(w.outbox) for w in ordered], [w.fingerprint for w in ordered])
        saved = {row["pair"] for row in rows}
        if len(saved) != len(ordered):
            raise StaleNavState([w.pair for w in ordered if w.pair not in saved])
    if spreads:
        await conn.execute(INSERT_SPREADS, [r.pair for r in spreads], [r.ts for r in spreads],
                           [r.trust_price for r in spreads], [r.nav for r in spreads],
                           [r.spot_price for r in spreads], [exact(r.spread) for r in spreads],
                           [exact(r.z) for r in spreads], [r.decision.value if r.decision else None for r in spreads],
                           [r.episode.value for r in spreads], [r.group_id for r in spreads])
    if episodes:
        await conn.execute(INSERT_EPISODES, [e.pair for e in episodes], [e.ts for e in episodes],
                           [e.group_id for e in episodes], [e.previous.value for e in episodes],
                           [e.episode.value for e in episodes],
                           [e.direction.value if e.direction else None for e in episodes],
                           [e.reason for e in episodes], [json.dumps(list(e.legs)) for e in episodes])


async def mark_sent(db: asyncpg.Pool | asyncpg.Connection, sent: Mapping[str, int]) -> None:
    if sent:
        pairs = sorted(sent)
        await db.execute(MARK_SENT, pairs, [sent[p] for p in pairs])


async def spreads_of(db: asyncpg.Pool | asyncpg.Connection, pair: str) -> list[SpreadRow]:
    rows = await db.fetch(SPREADS_OF, pair)
    return [SpreadRow(pair=r["pair"], ts=r["ts"], trust_price=r["trust_price"], nav=r["nav"],
                      spot_price=r["spot_price"], spread=float(r["spread"]),
                      z=None if r["zscore"] is None else float(r["zscore"]),
                      decision=Decision(r["decision"]) if r["decision"] else None,
                      episode=Episode(r["episode"]) if r["episode"] else Episode.FLAT, group_id=r["group_id"])
            for r in rows]


async def episodes_of(db: asyncpg.Pool | asyncpg.Connection, pair: str) -> list[EpisodeRecord]:
    rows = await db.fetch(EPISODES_OF, pair)
    return [EpisodeRecord(pair=r["pair"], ts=r["ts"], group_id=r["group_id"], previous=Episode(r["previous"]),
                          episode=Episode(r["episode"]),
                          direction=Decision(r["direction"]) if r["direction"] else None, reason=r["reason"],
                          legs=tuple(_json(r["legs"])))
            for r in rows]
