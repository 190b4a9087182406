"""The Coinbase resources, one per file."""
