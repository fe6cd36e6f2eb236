"""What the dashboard's routes use, built once per app: settings, manifest and the clients."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from imageflow.config import Settings
from imageflow.dashboard.auth import AuthClient
from imageflow.dashboard.firestore_rest import FirestoreReader
from imageflow.dashboard.uploads import Uploader
from imageflow.manifest import Manifest

EXTENSION_KEY = "imageflow"


@dataclass(frozen=True)
class Services:
    """The dashboard's collaborators."""

    settings: Settings
    manifest: Manifest
    auth: AuthClient
    reader: FirestoreReader
    uploader: Uploader


def install(app: Flask, services: Services) -> None:
    """Attach the services to the app."""
    app.extensions[EXTENSION_KEY] = services


def services() -> Services:
    """The services of the app handling the current request."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found
