"""One module per ``rbda`` subcommand (see :mod:`rbda.cli`)."""
