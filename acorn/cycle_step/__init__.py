"""One labeling cycle's model work: the one code path of ``dvc repro`` and ``acorn simulate``.

The stage scripts read and write the repository's files (the tiles, the labels, the prediction
cache, the labeling backend) and ``acorn simulate`` its own (the oracle's pool, its output folder);
both call these for the cycle itself, so a learning curve measures the product's cycle, not a copy
of it that could drift from it (tests/test_cycle_step.py trains one cycle both ways).

- ``candidates``: which unlabeled tiles a cycle predicts and ranks (``predict.candidates``), and
  which of them the next cycle looks at again (stages/predict.py).
- ``ranking``: the strategy ``rank.*`` names and the batch it picks (stages/rank.py, through
  acorn.selection.labeling_queue, which adds what the labeling backend needs).
- ``fine_tune``: the training set, the fine-tune (the epoch kept is the best on the fixed
  validation set) and the scores on the validation and test sets (stages/train.py).

One module per step, and nothing imported here, so that a stage's DVC deps hold its own step only.
"""
