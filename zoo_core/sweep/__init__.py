"""``zoo sweep``: a hyper-parameter search over a recipe, built on Optuna.

Each trial is an ordinary ``zoo run`` of the recipe with the trial's settings as
overrides, in its own run directory named after them (``SWEEP_DIR/trials/lr=5e-05,bs=16``),
so it resumes, runs on any backend and works for any recipe kind.  Optuna chooses the
settings (its grid or TPE sampler), stops bad trials early (its median pruner, told
every dev evaluation the run already makes) and keeps the sweep (its storage: an
SQLite file in the sweep directory by default, or any database URL that workers on
several machines share).

- :mod:`zoo_core.sweep.spec`: the sweep's settings, checked before any trial starts (no Optuna).
- :mod:`zoo_core.sweep.study`: the Optuna study and the trials (imports Optuna).
- :mod:`zoo_core.sweep.summary`: ``sweep.json``, what ``zoo report`` and ``zoo export`` read (no Optuna).
"""
