"""Root conftest: only declares the fixture plugins; fixtures live in fixtures/, split by concern."""

pytest_plugins = [
    "fixtures.stack",
    "fixtures.images",
    "fixtures.firestore",
    "fixtures.pubsub",
]
