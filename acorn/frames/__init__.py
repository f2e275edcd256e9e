"""Whole frames, not tiles: slicing a frame for a detector and merging the slices' boxes.

People label tiles but deploy a detector on whole frames (a 4K webcam image). ``merge`` is the
pure box arithmetic (no model), ``detect`` runs a detector over frames and writes frame-level
results, ``evaluate`` scores a detector on whole test frames that way, ``cli`` is the ``acorn
detect`` command.
"""
