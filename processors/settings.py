"""Settings of a stream processor (section ``processor``, env ``PILOTSTREAM_<FIELD>``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pilotstream.errors import SettingsError
from pilotstream.settings import BaseSettings, env_name, setting
from pilotstream.topics import DELTAS, READINGS


@dataclass(frozen=True, kw_only=True)
class ProcessorSettings(BaseSettings):
    """What one processor process needs; unsafe values refuse to start."""

    section = "processor"

    group_id: str = setting("pilotstream-processors", "Kafka consumer group (shared by processes)")
    readings_topic: str = setting(READINGS, "Kafka topic of reading batches")
    deltas_topic: str = setting(DELTAS, "Kafka topic the changed window results go to")
    publish_deltas: bool = setting(True, "publish changed windows to the deltas topic")
    poll_timeout_ms: int = setting(200, "getmany timeout_ms: wait at most this for records")
    # 5,000 records (100,000 readings in records of 20): with 100,000 devices at steady state
    # (4 h of 1-minute readings) peak RSS 908 MiB and medians of the last three quarters 57-66
    # MiB lower than at 10,000 (982 and 1,007 MiB), for 5 % fewer readings/s (10,000 devices:
    # 314k vs 329k, two runs each)
    poll_max_records: int = setting(5_000, "getmany max_records: Kafka records per batch")
    writer_lanes: int = setting(
        2,
        "database connections committing in parallel, each for its own share of the partitions "
        "(1: one commit in flight at a time)",
    )
    session_timeout_ms: int = setting(10_000, "consumer group session timeout (failover time)")
    fetch_max_bytes: int = setting(64 * 2**20, "aiokafka fetch_max_bytes")
    # 2 MiB, not a quarter of fetch_max_bytes: a fetch then holds records of every partition, so
    # a backlog is worked off evenly (with 16 MiB a 10,000-record poll came from one partition,
    # and partitions were read two at a time); the state of 100,000 devices reached its full
    # size at 30 % of a 5 h replay instead of at 74 %; readings/s the same
    # (302-317k vs 308-312k, 10,000 devices, two runs each)
    partition_fetch_bytes: int = setting(
        2 * 2**20,
        "aiokafka max_partition_fetch_bytes: bytes a fetch takes from one partition (smaller: "
        "partitions progress more evenly)",
    )
    allowed_lateness_s: int = setting(3600, "late data within this restates a closed window")
    max_future_skew_s: int = setting(300, "readings further ahead of now are refused (future_ts)")
    idle_close_s: int = setting(900, "close the open windows of devices silent for this long")
    idle_check_s: float = setting(5.0, "how often the idle timer runs")
    min_coverage: float = setting(0.8, "windows below this coverage are flagged LOW_COVERAGE")
    rehydrate_margin_s: int = setting(
        6 * 3600, "history loaded before the open windows when a device's state is rebuilt"
    )
    rehydrate_recent_s: int = setting(
        2 * 86400, "on assignment, rebuild at once the devices heard from within this event time"
    )
    baseline_days: int = setting(365, "baseline period before an intervention start, days")
    baseline_refresh_s: float = setting(300.0, "re-read interventions and retry failed fits")
    baseline_hourly_min_days: int = setting(
        365,
        "shortest baseline on which the temperature (TOWT) model may be used; CalTRACK asks 365, "
        "a shorter one is a documented departure (models carry their period)",
    )
    baseline_wait_s: float = setting(
        120.0,
        "how long (wall time) a window waits for its baseline period or hour's temperature to be "
        "final before it is fitted or left without a baseline",
    )
    registry_file: Path | None = setting(  # noqa: RUF009 (settings fields are immutable)
        None, "registry TOML (default: the packaged one)"
    )
    factors_file: Path | None = setting(  # noqa: RUF009
        None, "emission factor CSV (default: the packaged seed)"
    )
    dead_letter_max_bytes: int = setting(4096, "original bytes kept in a rejection")
    metrics_port: int = setting(0, "Prometheus /metrics and /health on 127.0.0.1 (0 = off)")
    drain_timeout_s: float = setting(20.0, "on SIGTERM: finish the batch and commit within this")
    exit_when_idle_s: float = setting(
        0.0, "exit once lag is zero and nothing arrived for this long (0 = run on)"
    )

    def validate(self) -> None:
        """Refuse values that would lose data or cannot work."""
        super().validate()
        if not self.group_id:
            _refuse("group_id", "must not be empty")
        if self.readings_topic == self.deltas_topic:
            _refuse("deltas_topic", "must differ from readings_topic (a feedback loop)")
        if not 0 < self.poll_timeout_ms <= 60_000:
            _refuse("poll_timeout_ms", "must be 1..60000")
        if self.poll_max_records <= 0 or self.fetch_max_bytes <= 0:
            _refuse("poll_max_records", "poll_max_records and fetch_max_bytes must be > 0")
        if not 0 < self.partition_fetch_bytes <= self.fetch_max_bytes:
            _refuse("partition_fetch_bytes", "must be > 0 and at most fetch_max_bytes")
        if not 1 <= self.writer_lanes <= 8:
            _refuse("writer_lanes", "must be 1..8")
        if not 3000 <= self.session_timeout_ms <= 300_000:
            _refuse("session_timeout_ms", "must be 3000..300000")
        if self.allowed_lateness_s < 0 or self.max_future_skew_s < 0:
            _refuse("allowed_lateness_s", "allowed_lateness_s and max_future_skew_s must be >= 0")
        if self.idle_close_s <= 0 or self.idle_check_s <= 0:
            _refuse("idle_close_s", "idle_close_s and idle_check_s must be > 0")
        if not 0 <= self.min_coverage <= 1:
            _refuse("min_coverage", "must be between 0 and 1")
        if self.rehydrate_margin_s < 3600:
            _refuse("rehydrate_margin_s", "must be >= 3600 (anchors of the widest window)")
        if not 28 <= self.baseline_hourly_min_days <= 3650:
            _refuse("baseline_hourly_min_days", "must be between 28 and 3650 days")
        if self.baseline_days < 28:
            _refuse("baseline_days", "must be >= 28 (shortest sufficient baseline)")
        if not 0 <= self.metrics_port < 65536:
            _refuse("metrics_port", "must be 0 (off) or a TCP port")
        if self.drain_timeout_s <= 0 or self.exit_when_idle_s < 0:
            _refuse("drain_timeout_s", "drain_timeout_s must be > 0, exit_when_idle_s >= 0")


def _refuse(name: str, why: str) -> NoReturn:
    msg = f"setting {name} ({env_name(name)}): {why}"
    raise SettingsError(msg)
