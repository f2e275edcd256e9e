"""Learning curves per query strategy, measured with an oracle: ``acorn simulate``.

- ``pools``: what the oracle knows (pool items with ground truth, a fixed test set).
- ``curves``: pure functions over the recorded rows (replay for resume, AUC, labels to target,
  hit rates, false alarms on empty images, paired differences to random with bootstrap intervals).
- ``run``: the driver (``simulate``, ``screen``) and its settings (``SimulateConfig``).
- ``report``: report.md, screen.md and the plot.
- ``settings``: the settings and pool a simulation's flags give (shared with benchmarks/).
- ``cli``: the ``acorn simulate`` command.
"""
