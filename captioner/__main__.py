"""``python -m captioner``: the same command line as ``captioner``."""

from captioner.cli import main

if __name__ == "__main__":
    main(prog_name="captioner")
