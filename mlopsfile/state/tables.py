"""The state store's tables."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(63), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("spec_digest", String(64)),
    Column("model_version", String(64)),
    Column("model_digest", String(80)),
    Column("config", Text),
    Column("message", Text),
    Column("user", String(128)),
    Column("git_commit", String(64)),
    Column("plan_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("scope", String(64), primary_key=True),
    Column("lock_id", String(64), nullable=False),
    Column("holder", String(256), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user", String(128)),
    Column("host", String(256)),
    Column("git_commit", String(64)),
    Column("operation", String(32), nullable=False),
    Column("resource", String(128)),
    Column("action", String(16)),
    Column("revision", Integer),
    Column("outcome", String(16), nullable=False),
    Column("message", Text),
)


rollouts = Table(
    "rollouts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False, default=0),
    Column("step_started_at", DateTime(timezone=True)),
    Column("baseline", Text),
    Column("from_version", String(64)),
    Column("to_version", String(64)),
    Column("spec_digest", String(64)),
    Column("desired", Text, nullable=False),
    Column("previous", Text),
    Column("requested", String(16)),
    Column("message", Text),
    Column("gates", Text),
    Column("keep_until", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)

holds = Table(
    "holds", metadata,
    Column("name", String(63), primary_key=True),
    Column("spec_digest", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("live_version", String(64)),
    Column("at", DateTime(timezone=True), nullable=False),
)

# One row per tested window of a monitor, copied from its actor. An actor's sequence
# numbers restart with the actor, so a row is keyed by the actor's incarnation too.
drift_verdicts = Table(
    "drift_verdicts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(63), nullable=False, index=True),
    Column("incarnation", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("arm", String(80), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("is_drift", Boolean, nullable=False),
    Column("statistic", Float),
    Column("p_value", Float),
    Column("rows", Integer, nullable=False),
    Column("detail", Text, nullable=False),
    UniqueConstraint("monitor", "incarnation", "seq"),
)

drift_actions = Table(
    "drift_actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(63), nullable=False, index=True),
    Column("incarnation", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("verdict_seq", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("type", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("message", Text),
    UniqueConstraint("monitor", "incarnation", "seq"),
)

# Which published batch outputs a monitor has tested: each is handed over once.
drift_feeds = Table(
    "drift_feeds", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(63), nullable=False),
    Column("source", String(256), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("monitor", "source"),
)

# The lifecycle.prevent_destroy flag of each resource as last applied: a removed spec no
# longer carries it, so a plan that deletes the resource asks here.
protections = Table(
    "protections", metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("prevent_destroy", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
