"""The load scenario (Locust) and its pure checks."""
