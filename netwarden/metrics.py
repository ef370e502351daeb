"""Prometheus metrics (``--metrics HOST:PORT``) for the controller and the sensor.

Every name starts with ``netwarden_``. Values are read from snapshots the owning loop
refreshes (the scrape runs in prometheus-client's own HTTP thread and never touches the
controller's database or the capture): the controller's loop copies its counters every
``REFRESH_S`` seconds; the sensor's publish loop hands over its cumulative counters at
each tick. The decision-to-kernel latency is a histogram observed where a ban is made.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from netwarden.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("netwarden.metrics")

#: how often the controller refreshes the snapshot the endpoint serves (seconds)
REFRESH_S = 2.0
#: decision-to-kernel latency buckets (seconds): netlink commits take well under 10 ms
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); one clear error otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9620")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"--metrics {text!r}: HOST must be an IP address") from None
    return host, int(port)


def serve(text: str, registry: CollectorRegistry) -> Callable[[], None]:
    """Serve ``registry`` on ``HOST:PORT``; returns the function that stops it."""
    from prometheus_client import start_http_server

    host, port = parse_hostport(text)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"--metrics {text}: cannot listen ({exc.strerror or exc})") from exc
    from netwarden.logs import event

    log.info(
        "metrics on http://%s:%d/metrics",
        host,
        port,
        extra=event("metrics.listen", url=f"http://{text}/metrics"),
    )

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


class _Snapshot:
    """A custom collector yielding families from the latest snapshot dict."""

    def __init__(self, build: Callable[[dict[str, Any]], Iterator[Any]]) -> None:
        self.data: dict[str, Any] = {}
        self._build = build

    def collect(self) -> Iterator[Any]:
        yield from self._build(self.data)  # one reference read: the loop swaps whole dicts


# --- controller -------------------------------------------------------------------------
def _controller_families(d: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    recs = CounterMetricFamily(
        "netwarden_controller_records", "Records received from sensors", labels=["type"]
    )
    for t, n in sorted(d.get("records", {}).items()):
        recs.add_metric([t], n)
    yield recs
    yield CounterMetricFamily(
        "netwarden_controller_batches", "Batches received from sensors", value=d.get("batches", 0)
    )
    yield GaugeMetricFamily("netwarden_controller_queue_depth", "Batches waiting when the loop last read them",
                            value=d.get("queue_depth", 0))  # fmt: skip
    lag = GaugeMetricFamily("netwarden_bus_lag_seconds", "Latest receive time minus send time, by sensor",
                            labels=["sensor"])  # fmt: skip
    up = GaugeMetricFamily(
        "netwarden_sensor_up", "1 when the sensor is heard from", labels=["sensor"]
    )
    drops = CounterMetricFamily("netwarden_sensor_reported_drops", "Loss counters sensors report in their headers",
                                labels=["sensor", "cause"])  # fmt: skip
    for sid, st in sorted(d.get("sensors", {}).items()):
        lag.add_metric([sid], st.get("last_latency_s", 0.0))
        up.add_metric([sid], 1.0 if st.get("up") and not st.get("stopped") else 0.0)
        for cause, n in sorted(st.get("drops", {}).items()):
            drops.add_metric([sid, cause], n)
    yield lag
    yield up
    yield drops
    alerts = CounterMetricFamily("netwarden_alerts", "Alerts stored, by kind", labels=["kind"])
    for k, n in sorted(d.get("alerts", {}).items()):
        alerts.add_metric([k], n)
    yield alerts
    inc = GaugeMetricFamily("netwarden_incidents_open", "Open and acknowledged incidents, by priority",
                            labels=["priority"])  # fmt: skip
    for p in ("P1", "P2", "P3", "P4"):
        inc.add_metric([p], d.get("incidents", {}).get(p, 0))
    yield inc
    yield GaugeMetricFamily(
        "netwarden_bans_active", "Active bans in the store", value=d.get("bans", 0)
    )
    yield GaugeMetricFamily(
        "netwarden_approvals_pending",
        "Decisions waiting for an operator",
        value=d.get("approvals", 0),
    )
    en = GaugeMetricFamily("netwarden_enforcement_dry_run", "1 when nothing is enforced (dry-run backend)",
                           labels=["backend"])  # fmt: skip
    en.add_metric([d.get("backend", "unknown")], 1.0 if d.get("backend") == "dryrun" else 0.0)
    yield en


class ControllerMetrics:
    """The controller's metrics: ``attach(ctl)`` refreshes them from its loop."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry()
        self.snapshot = _Snapshot(_controller_families)
        self.registry.register(self.snapshot)  # type: ignore[arg-type]
        self.latency = Histogram("netwarden_decision_to_kernel_seconds",
                                 "From a detection's policy decision to the ban committed in the kernel",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip

    def attach(self, ctl: Any) -> None:
        ctl.responder.latency_observers.append(self.latency.observe)
        ctl.add_periodic(REFRESH_S, lambda: self.refresh(ctl))
        self.refresh(ctl)

    def refresh(self, ctl: Any) -> None:
        now = ctl.clock()
        d: dict[str, Any] = {"backend": ctl.enforcer.name}
        db = ctl.store.db
        d["bans"] = len(ctl.store.active_bans(now))
        d["approvals"] = len(ctl.approvals.pending(now))
        try:
            d["alerts"] = dict(
                db.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind").fetchall()
            )
            d["incidents"] = dict(db.execute("SELECT priority, COUNT(*) FROM incidents WHERE status IN "
                                             "('open', 'acknowledged') GROUP BY priority").fetchall())  # fmt: skip
        except Exception:  # noqa: BLE001 - incident tables appear once triage is attached
            d["alerts"], d["incidents"] = {}, {}
        if ctl.ingest is not None:
            st = ctl.ingest.status()
            d["records"], d["batches"], d["sensors"] = st["records"], st["batches"], st["sensors"]
            d["queue_depth"] = st.get("queue_depth", 0)
        self.snapshot.data = d


# --- sensor -----------------------------------------------------------------------------
def _sensor_families(d: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily

    c = d.get("counters", {})
    yield CounterMetricFamily(
        "netwarden_sensor_packets", "Packets captured or read", value=c.get("packets", 0)
    )
    yield CounterMetricFamily(
        "netwarden_sensor_bytes", "Bytes captured or read", value=c.get("bytes", 0)
    )
    drops = CounterMetricFamily(
        "netwarden_sensor_drops", "Packets or records lost, by cause", labels=["cause"]
    )
    for cause, n in sorted(d.get("drops", {}).items()):
        drops.add_metric([cause], n)
    yield drops
    recs = CounterMetricFamily(
        "netwarden_sensor_records", "Records published on the bus", labels=["state"]
    )
    p = d.get("publisher", {})
    recs.add_metric(["sent"], p.get("records", 0))
    recs.add_metric(["dropped"], p.get("bus_dropped_records", 0))
    yield recs
    yield CounterMetricFamily(
        "netwarden_sensor_bus_messages", "Messages published on the bus", value=p.get("batches", 0)
    )


class SensorMetrics:
    """The sensor's metrics; ``observe(counters)`` from the publish loop."""

    def __init__(self, publisher: Any) -> None:
        from prometheus_client import CollectorRegistry

        self.publisher = publisher
        self.registry = CollectorRegistry()
        self.snapshot = _Snapshot(_sensor_families)
        self.registry.register(self.snapshot)  # type: ignore[arg-type]

    def observe(self, counters: dict[str, int]) -> None:
        from sensor.runner import loss_counters

        pub = self.publisher.stats()
        drops = loss_counters(counters)
        drops["bus_dropped_records"] = pub.get("bus_dropped_records", 0)
        self.snapshot.data = {"counters": dict(counters), "drops": drops, "publisher": pub}
