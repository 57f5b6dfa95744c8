"""`python manage.py runserver` is not cronsvc's server: Django's development
WSGI server is replaced by `manage.py dev` (the ASGI application under uvicorn,
with a worker and beat), as the serving issue decided."""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Not a cronsvc server: use `manage.py dev` (development) or `manage.py serve`."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs="*")

    def handle(self, *args, **options):
        raise CommandError(
            "cronsvc does not use Django's runserver: run `python manage.py dev` "
            "(API, worker and beat on the ASGI server) or `python manage.py serve` (production)."
        )
