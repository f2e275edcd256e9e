"""What every entry point stands on: offline settings, atomic writes, user errors, logging and signals."""
