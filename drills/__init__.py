"""Drills that prove the suite catches what breaks: the fault drill and the flake check."""
