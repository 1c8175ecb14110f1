"""manage.py apply -f fleet.yaml: make the registry match a fleet file (docs/config-file.md)."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from registry.fleet.document import FleetFileError, fleet_read
from registry.fleet.plan import fleet_plan, plan_apply


class Command(BaseCommand):
    help = "Make the registry's workers and routing policies match a fleet file (YAML)."

    def add_arguments(self, parser):
        parser.add_argument("-f", "--file", required=True, help="The fleet file; - reads standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument(
            "--prune", action="store_true", help="Also delete workers and policies the file does not name."
        )

    def handle(self, *args, file: str, dry_run: bool, prune: bool, **options):
        source = "<stdin>" if file == "-" else file
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from None
        try:
            plan = fleet_plan(fleet_read(text, source=source), prune=prune, source=source)
        except FleetFileError as exc:
            raise CommandError(f"{source} is not applied, nothing changed:\n{exc}") from None
        for change in plan.changes:
            self.stdout.write(str(change))
        if not plan:
            self.stdout.write("nothing to change: the registry matches the file")
            return
        if dry_run:
            self.stdout.write(f"dry run: {len(plan.changes)} change(s) not written")
            return
        plan_apply(plan)
        self.stdout.write(f"applied {len(plan.changes)} change(s)")
