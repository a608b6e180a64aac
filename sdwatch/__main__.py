"""Allow ``python -m sdwatch``."""

from sdwatch.cli import main

main()
