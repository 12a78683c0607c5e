# `python -m laurelin ...` is the `laurelin` command.
from laurelin.cli import main

if __name__ == "__main__":
    main()
