"""ingest/decoders."""
