"""``python -m gitstore``: the command line."""

from .cli import main

main()
