"""``python -m gitstore``: the command line (:func:`gitstore.cli.app.main`)."""

from gitstore.cli.app import main

if __name__ == "__main__":
    main()
