"""Learning curves per query strategy, measured with an oracle: ``acorn simulate``.

Each cycle is the stages' own step (acorn.cycle_step); what is here is what only a simulation has.

- ``config``: what a simulation runs (``SimulateConfig``: params plus strategies, seeds, cycles,
  pool share, the whole-pool reference), light enough for ``acorn --help``.
- ``pools``: what the oracle knows (pool items with ground truth, fixed validation and test sets).
- ``step``: one cycle of a run with the oracle's labels (selection, fine-tune, scores).
- ``run``: the run loop (``simulate``): seed by seed, cycle by cycle, the whole-pool reference,
  the summary.
- ``folder``: one output folder (its files, resume state, config.json, ``merge``, ``Result``).
- ``curves``: pure functions over the recorded rows (replay for resume, AUC, labels to target,
  hit rates, false alarms on empty images, paired differences to random with bootstrap intervals).
- ``report``: report.md, screen.md and the plot.
- ``screen``: ``--screen``, each strategy's first batch without training.
- ``batches``: fine-tunes of given batches, for the benchmark scripts (refit, batch_mix).
- ``settings``: the settings and pool a simulation's flags give (shared with benchmarks/).
- ``cli``: the ``acorn simulate`` command.
"""
