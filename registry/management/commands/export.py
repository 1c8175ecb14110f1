"""manage.py export: the registry as a fleet file, secrets as ${VAR} references."""

from django.core.management.base import BaseCommand

from registry.fleet.export import fleet_export


class Command(BaseCommand):
    help = "Print the registry's workers and routing policies as a fleet file (manage.py apply reads it)."

    def handle(self, *args, **options):
        self.stdout.write(fleet_export(), ending="")
