"""The agents of the reference system: one Pub/Sub-push service per module, listed in pipeline.toml."""
