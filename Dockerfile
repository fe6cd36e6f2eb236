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

# Debian's Chromium, the browser the suite launches when Playwright's own is absent (fixtures/browser.py);
# its version is the one of the base image's Debian release, kept current by its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-liberation \
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
