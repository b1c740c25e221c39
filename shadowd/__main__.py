"""`python -m shadowd` runs the CLI."""

from shadowd.cli import main

main()
