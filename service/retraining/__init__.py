"""Retraining: ``nearcast retrain`` and ``nearcast scheduler``, one module per stage.

The stages of one retraining, in order:

1. :mod:`~nearcast.service.retraining.schedule`: the cron scheduler (``nearcast scheduler``)
   starts a ``nearcast retrain`` subprocess per job file when its ``retrain.schedule`` fires.
2. :mod:`~nearcast.service.retraining.lock`: the model's retraining lock is taken (a file
   lock, or a PostgreSQL advisory lock across machines), so one retraining runs per model.
3. :mod:`~nearcast.service.retraining.job`: the job itself (:func:`~.job.run_retrain`) reads
   the fresh data, trains and registers the challenger, and scores it, the champion and the
   baselines on the same most-recent windows.
4. :mod:`~nearcast.service.retraining.gate`: the pure champion/challenger decision
   (:func:`~.gate.decide`) over those scores.
5. :mod:`~nearcast.service.retraining.job` again: a winner is load-checked and promoted with a
   compare-and-set under the model's alias lock (:func:`~.lock.alias_lock`, shared with
   ``promote``/``rollback``).
6. :mod:`~nearcast.service.retraining.records`: the ``retrain`` MLflow run, its scores and the
   decision, and the decision tags on the model versions.

The settings are the job file's ``retrain:`` section, :class:`nearcast.models.config.
RetrainConfig`, read by :func:`nearcast.models.jobconfig.read_retrain_section`.

This package re-exports nothing, so importing one stage loads only what it needs: ``schedule``
and ``gate`` load neither TensorFlow nor MLflow, ``lock`` no TensorFlow, and ``job`` loads
TensorFlow only once the retraining lock is held.
"""
