"""Optuna's own tables, as its SQLAlchemy models define them: the write path's targets.

Importing this imports Optuna (~0.3 s), so only writing and full-record decoding
do; the read path names its few columns in :mod:`robustness.storage._schema`.
"""

from __future__ import annotations

from optuna.storages._rdb import models

STUDIES = models.StudyModel.__table__
STUDY_DIRECTIONS = models.StudyDirectionModel.__table__
TRIALS = models.TrialModel.__table__
TRIAL_PARAMS = models.TrialParamModel.__table__
TRIAL_VALUES = models.TrialValueModel.__table__
TRIAL_USER_ATTRS = models.TrialUserAttributeModel.__table__
TRIAL_INTERMEDIATE = models.TrialIntermediateValueModel.__table__

VALUE_TYPE = models.TrialValueModel.TrialValueType
INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType
