"""``python -m gitstore``: the command line."""

from gitstore.cli.app import main

main()
