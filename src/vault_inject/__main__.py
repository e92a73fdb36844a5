"""``python -m vault_inject`` is the ``inject`` command."""

from .cli import main

if __name__ == "__main__":
    main()
