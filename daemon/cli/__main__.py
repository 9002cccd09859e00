"""``python -m invoicesync.daemon.cli``: the command line, as the tests and benches run it."""

from invoicesync.daemon.cli import main

main()
