"""`manage.py migrate`, creating a missing PostgreSQL database first.

Every entry point migrates through this command (dev, runall, the compose
`migrate` service): a database that does not exist yet is created
(cronsvc.dbcreate), and a server that cannot be reached is one line, not a
traceback.
"""

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from cronsvc.dbcreate import DatabaseUnreachable, database_ensure


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        try:
            if database_ensure(options["database"]):
                self.stdout.write(f"Created database {self._name(options['database'])}.")
        except DatabaseUnreachable as exc:
            raise CommandError(str(exc)) from exc
        return super().handle(*args, **options)

    @staticmethod
    def _name(alias: str) -> str:
        return str(connections[alias].settings_dict["NAME"])
