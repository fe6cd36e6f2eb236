# One image for every service of the pipeline: the service is the container's argument, as on Cloud Run:
#   gcloud run deploy imageflow-validator --image=IMAGE --args=validator ...
#   docker run -e PORT=8080 IMAGE dashboard
# Only the runtime packages are installed, at the versions pinned in requirements.lock.
FROM python:3.11-slim

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

USER imageflow
# Cloud Run sends traffic to $PORT on every interface of the container (0.0.0.0 only inside it).
ENTRYPOINT ["python", "-m", "imageflow.serve", "--host", "0.0.0.0"]
CMD ["dashboard"]
