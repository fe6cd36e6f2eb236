"""Root conftest: only declares the fixture plugins; fixtures live in fixtures/, split by concern."""

pytest_plugins = [
    "fixtures.deployment",
    "fixtures.markers",
    "fixtures.parallel",
    "fixtures.stack",
    "fixtures.target",
    "fixtures.reporting",
    "fixtures.service_logs",
    "fixtures.first_red",
    "fixtures.browser",
    "fixtures.users",
    "fixtures.images",
    "fixtures.firestore",
    "fixtures.pubsub",
    "fixtures.sweep",
    "fixtures.uploads",
    "fixtures.sessions",
    "fixtures.dashboard",
    "fixtures.failures",
    "fixtures.hypothesis_profiles",
    # The suite's tests of its own plugins run an inner pytest through it.
    "pytester",
]
