"""The deployment plan as code: environments, ordered steps, and their executors."""
