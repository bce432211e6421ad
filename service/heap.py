"""Keep garbage-collection pauses off the request path.

A serving process holds millions of long-lived objects (TensorFlow, Keras, MLflow, pandas and
the model). Without care every full collection walks all of them, and under load those
pauses (100-500 ms measured) become the p99 latency. After a model is loaded we collect once
and freeze what survives into the permanent generation, so later collections only look at
objects created since. Loading a new model unfreezes first, so the old model's cycles are
still collected; that full collection is one pause (a few hundred ms) per model load. Swapping
back to the version the store kept loaded creates and frees nothing, so it needs none.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("nearcast.heap")


def settle_heap() -> None:
    """Collect everything once, then freeze the survivors (call after loading models)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info("heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(),
             (time.perf_counter() - started) * 1000)


__all__ = ["settle_heap"]
