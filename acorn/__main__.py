"""`python -m acorn`: the same commands as the `acorn` script."""

from acorn.cli import main

main()
