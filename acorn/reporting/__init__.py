"""The per-cycle report: what was labeled, what it bought, and where the champion still fails.

A cycle otherwise leaves only a lock file, two JSON metrics and a CSV queue; a person reviewing
the loop in git needs to *see* the batch and the mistakes. ``history`` keeps the learning curve
(one row per cycle), ``matching`` finds the test set's false positives and misses, ``drawing``
renders tiles with boxes, ``markdown`` writes the page that links them, and ``cycle`` puts them
together for the report stage.
"""
