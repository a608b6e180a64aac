"""Allow ``python -m sdwatch``."""

from sdwatch.main import main

main()
