"""Command-line entry points (``contextmri SUBCOMMAND``): argument parsing and printing only (the
work is in ``contextmri_core.service``); the outermost layer of the core."""
