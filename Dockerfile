# Two images from one file. The default (last) stage is the services' image: every service of the
# pipeline, the service chosen by the container's argument, as on Cloud Run:
#   gcloud run deploy imageflow-validator --image=IMAGE --args=validator ...
#   docker run -e PORT=8080 IMAGE dashboard
# The `verify` stage is the suite as a verification container (README, "The suite as a container"):
#   docker build --target verify -t imageflow-verify .
#   docker run --rm -e IMAGEFLOW_TARGET=staging -v "$PWD/reports/verify:/results" imageflow-verify
# Both install only the packages they import, at the versions pinned in requirements.lock.

FROM python:3.11-slim AS verify

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMAGEFLOW_RESULTS_DIR=/results

# The tools the suite runs: Debian's Chromium, the browser it launches when Playwright's own is absent
# (fixtures/browser.py); exiftool, the metadata oracle's second reader (oracles/exiftool.py), without
# which the agents' oracles skip; and the Google Cloud CLI, whose `gcloud logging read` attaches a
# failed test's Cloud Logging lines (fixtures/service_logs.py), from Google's own apt repository.
# Versions are those of the base image's Debian release and of that repository, kept current by
# their updates.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
    && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
        | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
    && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
        > /etc/apt/sources.list.d/google-cloud-sdk.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium fonts-liberation libimage-exiftool-perl google-cloud-cli \
    && apt-get purge -y curl gnupg && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /suite
COPY requirements.lock ./
RUN pip install --constraint requirements.lock \
        pytest pytest-xdist pytest-playwright playwright allure-pytest hypothesis tenacity filelock \
        google-cloud-firestore google-cloud-pubsub google-cloud-storage firebase-admin \
        pillow numpy matplotlib flask requests

COPY pytest.ini conftest.py pipeline.toml environments.toml firestore.rules firebase.json ./
COPY fixtures ./fixtures
COPY pages ./pages
COPY oracles ./oracles
COPY deploy ./deploy
COPY stack ./stack
# The local executor's canary traffic (Locust's scenario, started as a program: never on a deployed target).
COPY load ./load
COPY imageflow ./imageflow
COPY tests/e2e ./tests/e2e
COPY tests/rules ./tests/rules
RUN mkdir /results

# The base image's root user, on purpose: Docker's default seccomp profile denies the user namespaces
# Chromium's sandbox needs, and the suite starts Chromium without its sandbox only as root. The image
# holds only the suite; its one way out is the results folder.
ENTRYPOINT ["python", "-m", "deploy.container"]


FROM python:3.11-slim AS services

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install --constraint requirements.lock \
        flask waitress pillow requests \
        google-cloud-firestore google-cloud-pubsub google-cloud-storage \
    && useradd --create-home --uid 10001 imageflow

COPY pipeline.toml ./
COPY imageflow ./imageflow

# By number: a runtime that cannot read /etc/passwd still runs it as that unprivileged user.
USER 10001
# Cloud Run sends traffic to $PORT on every interface of the container (0.0.0.0 only inside it).
ENTRYPOINT ["python", "-m", "imageflow.serve", "--host", "0.0.0.0"]
CMD ["dashboard"]
