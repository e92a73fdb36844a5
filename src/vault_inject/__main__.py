"""``python -m vault_inject`` is the ``inject`` command."""

from .cli.entry import main

if __name__ == "__main__":
    main()
