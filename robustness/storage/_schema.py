"""Our tables (``robustness_restarts``, ``robustness_leases``, ``robustness_progress``) and the few Optuna columns the read path names.

No Optuna import here: reading a study (``robustness stats``) must not pay for it.
The write path and full-record decoding use Optuna's own table definitions
(:mod:`robustness.storage._optuna_tables`).
"""

from __future__ import annotations

import sqlalchemy as sa

# Our own MetaData, so Optuna's create_all never sees our table (stock storages
# elsewhere in the process stay untouched).
METADATA = sa.MetaData()

# Stand-ins for the Optuna tables that our foreign keys reference and the read path
# queries. They name only the columns used here; Optuna's models own the full
# definitions and RDBStorage creates the tables (we never create these).
# tests/test_storage.py checks them against Optuna's models.
STUDIES = sa.Table(
    "studies",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512)),
)
TRIALS = sa.Table(
    "trials",
    METADATA,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.Integer),
    sa.Column("datetime_complete", sa.DateTime),  # naive UTC, as Optuna writes it
)
STUDY_USER_ATTRS = sa.Table(
    "study_user_attributes",
    METADATA,
    sa.Column("study_user_attribute_id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.Integer),
    sa.Column("key", sa.String(512)),
    sa.Column("value_json", sa.Text),
)

# One row per recorded restart. The primary key is what makes a restart recorded
# at most once, ever: a second writer of the same key fails inside its transaction,
# which then leaves nothing behind. ON DELETE CASCADE lets stock
# `optuna.delete_study` remove a study on PostgreSQL (SQLite does not enforce it;
# RestartStore.open_study clears rows left by a deleted study whose id is reused).
# The summary columns (see _keys.summary) are what read_table reads; each row's
# summary is written in the same transaction as its trial.
RESTARTS = sa.Table(
    "robustness_restarts",
    METADATA,
    sa.Column("study_id", sa.Integer, sa.ForeignKey(STUDIES.c.study_id, ondelete="CASCADE"), nullable=False),
    sa.Column("restart_key", sa.Text, nullable=False),
    sa.Column(
        "trial_id", sa.Integer, sa.ForeignKey(TRIALS.c.trial_id, ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("cell", sa.Text),
    sa.Column("seed", sa.BigInteger),
    sa.Column("restart", sa.Integer),
    sa.Column("success", sa.Boolean),
    sa.Column("diverged", sa.Boolean),
    sa.Column("metrics", sa.Text),
    sa.Column("primary_metric", sa.Text),
    sa.PrimaryKeyConstraint("study_id", "restart_key", name="pk_robustness_restarts"),
)

# One row per restart a driver is training right now (see _leases). A lease is an
# agreement between drivers to not train a restart twice; it is not what keeps a
# restart from being *recorded* twice (RESTARTS' primary key does that), so a lease
# that expires while its holder still trains costs work, never correctness.
# ``expires_at`` is in seconds since the epoch by the database's own clock, so
# drivers on machines with skewed clocks agree on it.
LEASES = sa.Table(
    "robustness_leases",
    METADATA,
    sa.Column("study_id", sa.Integer, sa.ForeignKey(STUDIES.c.study_id, ondelete="CASCADE"), nullable=False),
    sa.Column("restart_key", sa.Text, nullable=False),
    sa.Column("holder", sa.String(255), nullable=False, index=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("study_id", "restart_key", name="pk_robustness_leases"),
)

# One row per pack a sweep driver started: how far it got, for a live view of the
# sweep (see _progress). Workers never open the database, so the driver writes these
# from the reports Tune brings it. ``pack`` names the pack uniquely across drivers
# (holder/number). Times are seconds since the epoch by the database's clock, like
# the leases': ``updated_at`` is when ``step`` and ``metrics`` were reported (what
# rates are computed from), ``alive_at`` when the driver last vouched for the row
# (a running row whose ``alive_at`` goes stale belongs to a driver that died).
PROGRESS = sa.Table(
    "robustness_progress",
    METADATA,
    sa.Column("study_id", sa.Integer, sa.ForeignKey(STUDIES.c.study_id, ondelete="CASCADE"), nullable=False),
    sa.Column("pack", sa.Text, nullable=False),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("alive_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.PrimaryKeyConstraint("study_id", "pack", name="pk_robustness_progress"),
)
OUR_TABLES = (RESTARTS, LEASES, PROGRESS)


def create_tables(engine: sa.engine.Engine) -> None:
    """Create our tables if missing (Optuna's tables exist already: RDBStorage made them).

    A database laid out before leases or progress existed gets those tables on
    its first write; readers treat a missing one as empty.
    """
    for table in OUR_TABLES:
        try:
            METADATA.create_all(engine, tables=[table], checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # Two processes opening a fresh database race to create it; one wins.
            if not sa.inspect(engine).has_table(table.name):
                raise
