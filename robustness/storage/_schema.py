"""The tables: Optuna's own, plus one small table that makes writes exactly-once."""

from __future__ import annotations

import sqlalchemy as sa
from optuna.storages._rdb import models

STUDIES = models.StudyModel.__table__
STUDY_DIRECTIONS = models.StudyDirectionModel.__table__
STUDY_USER_ATTRS = models.StudyUserAttributeModel.__table__
TRIALS = models.TrialModel.__table__
TRIAL_PARAMS = models.TrialParamModel.__table__
TRIAL_VALUES = models.TrialValueModel.__table__
TRIAL_USER_ATTRS = models.TrialUserAttributeModel.__table__
TRIAL_INTERMEDIATE = models.TrialIntermediateValueModel.__table__

VALUE_TYPE = models.TrialValueModel.TrialValueType
INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType

# Our own MetaData, so Optuna's create_all never sees this table (stock storages
# elsewhere in the process stay untouched).
METADATA = sa.MetaData()

# One row per recorded restart. The primary key is what makes a restart recorded
# at most once, ever: a second writer of the same key fails inside its transaction,
# which then leaves nothing behind. ON DELETE CASCADE lets stock
# `optuna.delete_study` remove a study on PostgreSQL (SQLite does not enforce it;
# RestartStore.open_study clears rows left by a deleted study whose id is reused).
RESTARTS = sa.Table(
    "robustness_restarts",
    METADATA,
    sa.Column(
        "study_id",
        sa.Integer,
        sa.ForeignKey(STUDIES.c.study_id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("restart_key", sa.Text, nullable=False),
    sa.Column(
        "trial_id",
        sa.Integer,
        sa.ForeignKey(TRIALS.c.trial_id, ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.PrimaryKeyConstraint("study_id", "restart_key", name="pk_robustness_restarts"),
)


def create_tables(engine: sa.engine.Engine) -> None:
    """Create our table if missing (Optuna's tables exist already: RDBStorage made them)."""
    try:
        METADATA.create_all(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError:
        # Two processes opening a fresh database race to create it; one wins.
        if not sa.inspect(engine).has_table(RESTARTS.name):
            raise
