"""The reference image-processing system: a dashboard and Pub/Sub-triggered agents."""
