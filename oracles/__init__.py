"""Independent oracles: the truth about each agent's output, computed from the bytes a test uploaded.

Nothing here imports the reference system (`imageflow`): header parsing, orientation, downscaling,
hashing and the metadata reader (exiftool) are this package's own, so a bug in the system's code
cannot be repeated by its judge. Each check returns a list of problems, empty when the output is true.
"""
