"""A study: a search-space file, what is left of it to train, and the Ray Tune sweep that trains it.

- :mod:`~robustness.study.schema`: the YAML schema, one-line errors;
- :mod:`~robustness.study.search_space`: a validated file, its grid of cells and restart specs;
- :mod:`~robustness.study.check`: the dry run behind ``validate`` (data, one batch, one pack update);
- :mod:`~robustness.study.plan`: what storage lacks, cut into restart packs (no Ray, no database);
- :mod:`~robustness.study.sweep`: the packs as Ray Tune trials, outcomes written by the driver
  (the only module that imports Ray).
"""
