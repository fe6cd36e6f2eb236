"""Mutation testing of the reference system against the release suite, on a private copy and stack."""
