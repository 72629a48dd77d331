"""One module per command group; loaded lazily by cli.main."""
