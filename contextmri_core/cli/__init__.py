"""Command-line entry points (``contextmri SUBCOMMAND``): the outermost layer of the core."""
