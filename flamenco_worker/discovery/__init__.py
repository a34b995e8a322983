"""Finding a Manager on the local network."""
