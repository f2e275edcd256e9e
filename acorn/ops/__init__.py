"""Running the project: one git commit per cycle, ``acorn doctor``, ``acorn status``, the DagsHub set-up."""
