"""Subcommands of the export toolchain (discovered by :mod:`edgensd.cli.main`)."""
