"""Subcommands of the serial bridge (discovered by :mod:`edgensd.cli.main`)."""
