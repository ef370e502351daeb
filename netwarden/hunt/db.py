"""DuckDB over a state dir: the Parquet archive and the controller's database as views.

Views (docs/hunting.md has their columns):

- ``flows``, ``hosts``, ``pairs``, ``arp``: every archived record of that type, as written
  (``read_parquet`` over ``archive/type=<kind>/``, hive partitions ``type``, ``date``,
  ``hour``, ``sensor`` as columns).
- ``conns``: one row per connection (the last record of each flow uid, so a long-lived
  flow's interim records count once), with Zeek-like column names the hunts use.
- ``alerts``, ``incidents``, ``bans``, ``audit``: from ``netwarden.db`` (read-only).
- ``incident_flows``: for every incident, the connections of its hosts from an hour before
  it opened to five minutes after its last alert.

The connection is in memory; nothing is written to the state dir, extensions are never
downloaded, and ``query`` accepts one read-only statement.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from netwarden.errors import ConfigError, NetWardenError
from netwarden.hunt import state_tables

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ARCHIVE_KINDS = {"flows": "flow", "hosts": "host", "pairs": "pair", "arp": "arp"}
#: statement types ``query`` runs
READ_ONLY = {"SELECT"}


class HuntError(NetWardenError):
    """A hunt or query cannot run (bad SQL, unknown name, nothing to read)."""


def default_internal() -> tuple[IPNetwork, ...]:
    from controller.config import PolicyConfig

    return PolicyConfig().internal_networks


class HuntDB:
    def __init__(self, state_dir: str | Path, internal: Sequence[IPNetwork] | None = None) -> None:
        self.state_dir = Path(state_dir)
        if not self.state_dir.is_dir():
            raise ConfigError(f"no state dir at {self.state_dir}")
        self.archive = self.state_dir / "archive"
        self.internal = tuple(default_internal() if internal is None else internal)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": "false",
                "autoload_known_extensions": "false",
                "threads": "2",
            },
        )
        # times are compared in UTC whatever the machine's zone (TIMESTAMP vs TIMESTAMPTZ)
        self.con.execute("SET TimeZone = 'UTC'")
        self._udfs()
        self.con.execute(f"CREATE MACRO internal_bin(b) AS ({internal_bin_sql(self.internal)})")
        for view, kind in ARCHIVE_KINDS.items():
            self._archive_view(view, kind)
        for name, table in state_tables.load(self.state_dir).items():
            self.con.register(f"_{name}", table)
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}")
        self.con.execute(CONNS_VIEW)
        self.con.execute(INCIDENT_FLOWS_VIEW)

    # --- set-up -------------------------------------------------------------------------
    def _archive_view(self, view: str, kind: str) -> None:
        d = self.archive / f"type={kind}"
        files = sorted(d.glob("date=*/hour=*/sensor=*/*.parquet")) if d.is_dir() else []
        if files:
            glob = str(d / "date=*" / "hour=*" / "sensor=*" / "*.parquet").replace("'", "''")
            src = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
            self.con.execute(f"CREATE VIEW {view} AS SELECT * FROM {src}")
            return
        from netwarden.records import arrow
        from netwarden.records.schema import RECORD_TYPES

        empty = arrow.to_arrow(kind, np.zeros(0, RECORD_TYPES[kind]))
        parts = {
            "type": pa.string(),
            "date": pa.date32(),
            "hour": pa.int64(),
            "sensor": pa.string(),
        }
        for name, typ in parts.items():
            empty = empty.append_column(name, pa.nulls(0, typ))
        self.con.register(f"_empty_{view}", empty)
        self.con.execute(f"CREATE VIEW {view} AS SELECT * FROM _empty_{view}")

    def _udfs(self) -> None:
        nets = self.internal

        @functools.lru_cache(maxsize=65536)
        def internal_one(addr: str | None) -> bool | None:
            if addr is None:
                return None
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                return False
            return any(ip.version == n.version and ip in n for n in nets)

        def is_internal(col: pa.Array) -> pa.Array:
            return pa.array([internal_one(a) for a in col.to_pylist()], pa.bool_())

        from duckdb.func import PythonUDFType

        self.con.create_function(
            "is_internal",
            is_internal,
            ["VARCHAR"],
            "BOOLEAN",
            type=PythonUDFType.ARROW,
            side_effects=False,
        )

    # --- queries ------------------------------------------------------------------------
    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query the hunts build (trusted SQL, parameters bound)."""
        cols, tuples = self._run(sql, list(params))
        return [dict(zip(cols, r, strict=True)) for r in tuples]

    def _run(self, sql: str, params: list[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Execute; once more if a file vanished under the query (a running controller
        compacts partitions: the views' globs are expanded again)."""
        for attempt in (1, 2):
            try:
                cur = self.con.execute(sql, params)
                return [d[0] for d in cur.description or []], cur.fetchall()
            except duckdb.IOException as exc:
                if attempt == 2:
                    raise HuntError(f"query failed: {_first_line(exc)}") from None
            except duckdb.Error as exc:
                raise HuntError(f"query failed: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A user's query: exactly one read-only statement (SELECT, WITH ... SELECT)."""
        try:
            stmts = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise HuntError(f"cannot parse the query: {_first_line(exc)}") from None
        if len(stmts) != 1:
            raise HuntError(f"expected one SELECT statement, got {len(stmts)} statements")
        kind = str(stmts[0].type).rsplit(".", 1)[-1].upper()
        if kind not in READ_ONLY:
            raise HuntError(f"only read-only queries (SELECT) run here, not {kind}")
        return self._run(sql, [])

    def newest(self) -> float | None:
        """Epoch seconds of the newest archived connection activity (the hunts' "now")."""
        row = self.con.execute("SELECT epoch(max(ts_end)) FROM conns").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def close(self) -> None:
        self.con.close()


def internal_bin_sql(nets: Sequence[IPNetwork], col: str = "b") -> str:
    """A SQL condition: the 16-byte address ``col`` (IPv4 mapped into IPv6, as the records'
    ``*_h_bin`` columns) is in one of ``nets``; compares bytes, no per-row Python."""

    def mapped(n: IPNetwork) -> tuple[bytes, bytes]:
        lo, hi = n.network_address.packed, n.broadcast_address.packed
        if n.version == 4:
            return b"\0" * 10 + b"\xff\xff" + lo, b"\0" * 10 + b"\xff\xff" + hi
        return lo, hi

    def blob(b: bytes) -> str:
        return "'" + "".join(f"\\x{x:02x}" for x in b) + "'::BLOB"

    ranges = [mapped(n) for n in nets]
    return " OR ".join(f"({col} BETWEEN {blob(lo)} AND {blob(hi)})" for lo, hi in ranges) or "false"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# One row per connection: the last record of each uid. Column names follow Zeek's conn.log.
# One row per connection: its final record, or the newest interim record of a flow still
# open. Column names follow Zeek's conn.log; orig_internal/resp_internal: is_internal().
CONNS_VIEW = """
CREATE VIEW conns AS
WITH final AS (SELECT * FROM flows WHERE NOT interim),
open AS (
    SELECT * FROM flows
    WHERE interim AND uid NOT IN (SELECT uid FROM final)
    QUALIFY row_number() OVER (PARTITION BY uid ORDER BY ts_last DESC) = 1
)
SELECT
    uid, ts, ts_last AS ts_end, duration, orig_h, orig_p, resp_h, resp_p, proto, conn_state,
    orig_bytes, resp_bytes, orig_pkts, resp_pkts, orig_ip_bytes, resp_ip_bytes, history,
    dns_qname, dns_queries, dns_distinct_names, dns_qtype_mask, dns_label_entropy_max,
    dns_longest_label, interim AS open, sensor,
    internal_bin(orig_h_bin) AS orig_internal, internal_bin(resp_h_bin) AS resp_internal
FROM (SELECT * FROM final UNION ALL SELECT * FROM open)
"""

INCIDENT_FLOWS_VIEW = """
CREATE VIEW incident_flows AS
SELECT i.id AS incident_id, c.*
FROM incidents i
JOIN conns c
  ON (list_contains(i.hosts, c.orig_h) OR list_contains(i.hosts, c.resp_h))
 AND c.ts >= i.opened_at - INTERVAL 1 HOUR
 AND c.ts <= i.updated_at + INTERVAL 5 MINUTE
"""
