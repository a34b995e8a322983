"""Making the Manager findable on the local network."""
