"""The local stack runner: emulators, revision router and service processes."""
