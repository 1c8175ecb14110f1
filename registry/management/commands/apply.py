"""manage.py apply -f fleet.yaml: make the registry match a fleet file (docs/config-file.md)."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from registry.fleet.document import FleetFileError, fleet_read
from registry.fleet.plan import fleet_plan, plan_apply
from usage.config_file import usage_plan


class Command(BaseCommand):
    help = "Make the registry's workers and routing policies match a fleet file (YAML), and add its prices, teams and budgets."

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
            fleet = fleet_read(text, source=source)
            plan = fleet_plan(fleet, prune=prune, source=source)
            usage, problems = usage_plan(fleet.usage, line_of=fleet.usage_lines.at)
            if problems:
                raise FleetFileError(source, problems)
        except FleetFileError as exc:
            raise CommandError(f"{source} is not applied, nothing changed:\n{exc}") from None
        for change in [*plan.changes, *usage.changes]:
            self.stdout.write(str(change))
        if not plan and not usage.changes:
            self.stdout.write("nothing to change: the registry matches the file")
            return
        count = len(plan.changes) + len(usage.changes)
        if dry_run:
            self.stdout.write(f"dry run: {count} change(s) not written")
            return
        with transaction.atomic():  # the registry's changes and the usage section's, or neither
            plan_apply(plan)
            usage.apply()
        self.stdout.write(f"applied {count} change(s)")
