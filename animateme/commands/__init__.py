"""Subcommands of the `animateme` console command, one module each."""
