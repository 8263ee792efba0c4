"""The schema. Every change here goes with a migration in `store/migrations/versions/`.

Times are epoch seconds (double precision) so SQLite and PostgreSQL agree without time-zone games.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for millions of rows.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Client(Base):
    """An OAuth 2.0 client: a device (one board) or an operator (a person's or script's key)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "device" | "operator"
    name: Mapped[str] = mapped_column(String(128))
    lot: Mapped[str | None] = mapped_column(String(64), index=True)
    mac: Mapped[str | None] = mapped_column(String(17), unique=True)
    # HMAC-SHA256 of the secret under a key kept outside the database; never the secret.
    secret_hash: Mapped[str | None] = mapped_column(String(128))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[float | None] = mapped_column(Double)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    deleted_at: Mapped[float | None] = mapped_column(Double)
    # Tokens issued (`iat`) before this are revoked: set by a zero-grace rotation and a disable.
    tokens_valid_after: Mapped[float | None] = mapped_column(Double)
    # The external authorization server (its exact `iss`) this device gets tokens from; None: the
    # built-in one. An external device has no secret here.
    issuer: Mapped[str | None] = mapped_column(String(512))


class SigningKey(Base):
    """Metadata of a JWT signing key; the private key lives in a 0600 file in the data dir."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "next" (published, not signing) -> "active" (signing) -> "retired" (published until
    # retire_after, the expiry of the last token it signed) -> removed from the JWKS.
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Double)
    activated_at: Mapped[float | None] = mapped_column(Double)
    retire_after: Mapped[float | None] = mapped_column(Double)
    # AES-256-GCM of the PKCS#8 private key under the key-encryption key (auth/kek.py); None
    # once the key is retired (its private part is destroyed).
    private_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class RateBucket(Base):
    """A token bucket shared by every instance on one PostgreSQL database (auth/ratelimit.py)."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    level: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    granted: Mapped[int] = mapped_column(Integer)  # by the last take (returned by it)


class UiSession(Base):
    """A dashboard session, seen by every instance (ui/session.py). Keyed by a hash of the
    cookie; the tokens, the CSRF token and a rotated secret waiting to be shown are sealed under
    a key derived from the cookie, which only the browser holds."""

    __tablename__ = "ui_sessions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double, index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    new_secret: Mapped[bytes | None] = mapped_column(LargeBinary)


class AuditEvent(Base):
    """Who did what when: admin actions and token issuance. Never holds a secret."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Double, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_target_at", "target", "at"),)


class Reading(Base):
    """One reading from one board: a zone board's `cars`, or a gate board's cumulative
    counters `gate_in`/`gate_out`; (device_id, seq) is unique so retries store once."""

    __tablename__ = "readings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.client_id"))
    lot: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    cars: Mapped[int | None] = mapped_column(Integer)
    gate_in: Mapped[int | None] = mapped_column(BigInteger)
    gate_out: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[float | None] = mapped_column(Double)  # the board's clock, if it had one
    received_at: Mapped[float] = mapped_column(Double)  # the server's clock

    __table_args__ = (UniqueConstraint("device_id", "seq", name="uq_readings_device_seq"),)


class DeviceState(Base):
    """Current reading (the newest stored by the latest post: ingest/store.py) and health per
    device: lot totals never scan `readings`."""

    __tablename__ = "device_state"

    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id"), primary_key=True
    )
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    cars: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[float | None] = mapped_column(Double)
    received_at: Mapped[float | None] = mapped_column(Double)
    last_seen_at: Mapped[float | None] = mapped_column(Double)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    health_at: Mapped[float | None] = mapped_column(Double)
    # A gate board's counters (ingest/occupancy.py): the newest reading's seq and raw 32-bit
    # values, the flows since install summed wrap-safe over all its series, the flows at the
    # lot's last recount, and its series (a counter that went backwards starts a new one).
    g_seq: Mapped[int | None] = mapped_column(BigInteger)
    g_in: Mapped[int | None] = mapped_column(BigInteger)
    g_out: Mapped[int | None] = mapped_column(BigInteger)
    g_total_in: Mapped[int | None] = mapped_column(BigInteger)
    g_total_out: Mapped[int | None] = mapped_column(BigInteger)
    g_ref_in: Mapped[int | None] = mapped_column(BigInteger)
    g_ref_out: Mapped[int | None] = mapped_column(BigInteger)
    g_series: Mapped[int | None] = mapped_column(Integer)
    g_series_at: Mapped[float | None] = mapped_column(Double)
    # A seq that jumped, current once the next reading follows it (ingest/seqrule.py), for the
    # current reading and a gate's counters; a gate's lane credit and counter faults (steps
    # beyond what its lanes can pass: ingest/occupancy.py); posts refused for the per-device
    # rate (ingest/ratelimit.py).
    seq_suspect: Mapped[int | None] = mapped_column(BigInteger)
    g_suspect: Mapped[int | None] = mapped_column(BigInteger)
    g_credit_in: Mapped[float | None] = mapped_column(Double)
    g_credit_out: Mapped[float | None] = mapped_column(Double)
    g_credit_at: Mapped[float | None] = mapped_column(Double)
    g_faults: Mapped[int | None] = mapped_column(Integer)
    g_fault_at: Mapped[float | None] = mapped_column(Double)
    refused: Mapped[int | None] = mapped_column(BigInteger)
    refused_at: Mapped[float | None] = mapped_column(Double)


class LotBaseline(Base):
    """A lot's last recount: `cars` counted by an operator at `since`; gate flows count from
    there (ingest/occupancy.py)."""

    __tablename__ = "lot_baselines"

    lot: Mapped[str] = mapped_column(String(64), primary_key=True)
    cars: Mapped[int] = mapped_column(Integer)
    since: Mapped[float] = mapped_column(Double)
    actor: Mapped[str] = mapped_column(String(64))


class Lot(Base):
    """A parking lot as the product knows it. A lot with devices but no record still works;
    the record adds a capacity (for `free` spaces) and a label people read."""

    __tablename__ = "lots"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    capacity: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class OccupancyRollup(Base):
    """Each device's last reading per time bucket, at a few resolutions, for lot history.

    Written with the readings on the ingest commit path (ingest/history.py). Lot history at a
    step reads one row per device per step instead of every reading (30 days of a 100-board
    lot at one reading per 10 s is 26M readings but 72,000 hourly rows).
    """

    __tablename__ = "occupancy_rollup"
    # SQLite: the rows live in the primary key's b-tree, so a post dirties one page, not two.
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012

    lot: Mapped[str] = mapped_column(String(64), primary_key=True)
    res: Mapped[int] = mapped_column(Integer, primary_key=True)  # bucket width, s
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # start, epoch s
    cars: Mapped[int] = mapped_column(BigInteger)  # a gate board's: its flows since baseline
    at: Mapped[float] = mapped_column(Double)  # the reading's time: ts, else received_at
    seq: Mapped[int] = mapped_column(BigInteger)


class OutboxMessage(Base):
    """An MQTT message committed with the readings it reports; deleted once the broker acks it."""

    __tablename__ = "mqtt_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    retain: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Double)


class Release(Base):
    """A signed agent release (provisioning/common/bundle.py): the manifest exactly as signed."""

    __tablename__ = "releases"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(64))


class ReleaseFile(Base):
    """One app file of a release, served to boards (with HTTP Range)."""

    __tablename__ = "release_files"

    version: Mapped[str] = mapped_column(
        String(32), ForeignKey("releases.version"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceAgent(Base):
    """Per board: the agent version it runs, the one it should run, and its update state."""

    __tablename__ = "device_agent"

    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id"), primary_key=True
    )
    version: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[float | None] = mapped_column(Double)


class Rollout(Base):
    """A release going out to a set of boards: canaries first, the rest after their wait."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(32), ForeignKey("releases.version"))
    devices: Mapped[list[str]] = mapped_column(JSON)
    canaries: Mapped[list[str]] = mapped_column(JSON)
    canary_wait_s: Mapped[float] = mapped_column(Double)
    silence_s: Mapped[float] = mapped_column(Double)  # a canary this long without a post: pause
    # canary -> rolling -> done; paused (reason) and aborted on the way
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[float] = mapped_column(Double)
    canaries_ok_at: Mapped[float | None] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    # Phased rollouts: the cumulative board counts of each phase (`devices` is in the order of
    # the stable hash, so phase k is its first phases[k]), the phase running now and when it
    # started, the health thresholds, how many boards may be updating at once, and the
    # version each board ran when the rollout started (where `abort --rollback` sends it).
    phases: Mapped[list[int] | None] = mapped_column(JSON)
    phase: Mapped[int | None] = mapped_column(Integer)
    phase_started_at: Mapped[float | None] = mapped_column(Double)
    max_crash_rate: Mapped[float | None] = mapped_column(Double)
    min_online: Mapped[float | None] = mapped_column(Double)
    parallel: Mapped[int | None] = mapped_column(Integer)
    from_versions: Mapped[dict[str, str | None] | None] = mapped_column(JSON)


class CrashReport(Base):
    """A board's crash report as received (append-only): the newest is its `last_crash`, and
    the per-release health counts them (service/releases/health.py)."""

    __tablename__ = "crash_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.client_id"))
    at: Mapped[float] = mapped_column(Double)  # the server's time of receipt
    version: Mapped[str | None] = mapped_column(String(32))  # the version that crashed
    running: Mapped[str | None] = mapped_column(String(32))  # the version that reported it
    cause: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    traceback: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_crash_reports_device_at", "device_id", "at"),
        Index("ix_crash_reports_at", "at"),
    )


class VitalsSample(Base):
    """A board's health report as received, with the agent version it ran: its vitals over
    time, and the board-hours of the per-release health (service/releases/health.py)."""

    __tablename__ = "vitals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.client_id"))
    at: Mapped[float] = mapped_column(Double)
    version: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_vitals_device_at", "device_id", "at"),
        Index("ix_vitals_at", "at"),
    )
