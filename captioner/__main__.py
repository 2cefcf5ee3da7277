"""``python -m captioner``: the same command line as ``captioner``."""

from captioner import console

if __name__ == "__main__":
    console(prog_name="captioner")
