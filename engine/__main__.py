"""`python -m engine shell` prints the offline engine settings as shell exports."""

import sys

from engine import shell_exports

if __name__ == "__main__":
    if sys.argv[1:] != ["shell"]:
        sys.exit("usage: python -m engine shell")
    print(shell_exports())
