"""``python -m zoo_core``: the ``zoo`` command, for environments without its console script."""

from zoo_core.cli.main import main

main()
