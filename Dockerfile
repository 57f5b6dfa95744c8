# One image for every cronsvc service (migrate, api, beat, worker); the
# command comes from docker-compose.yml (see cronsvc/topology.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CRONSVC_DATA_DIR=/app/data \
    CRONSVC_STATIC_ROOT=/app/static

WORKDIR /app

RUN groupadd --system --gid 10001 cronsvc \
    && useradd --system --uid 10001 --gid cronsvc --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin cronsvc

# The dependencies from pyproject.toml first: a change of code alone does not
# reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# The project itself; collectstatic with a throwaway key, so no secret is
# generated into the image (DJANGO_SECRET_KEY comes from the environment).
RUN pip install --no-deps . \
    && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /app/data \
    && mkdir -p /app/data \
    && chown cronsvc:cronsvc /app/data

USER 10001:10001
EXPOSE 8123
CMD ["python", "manage.py", "serve"]
