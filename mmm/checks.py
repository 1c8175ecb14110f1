"""The gateway's own deployment checks, shown by ``manage.py check --deploy``."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from mmm import encryption


@register(Tags.security, deploy=True)
def secrets_settings_check(app_configs, **kwargs) -> list[Warning]:
    warnings = []
    if encryption.key_is_derived():
        warnings.append(
            Warning(
                "MMM_SECRET_KEYS is not set: upstream API keys are encrypted with a key derived from "
                "SECRET_KEY, so rotating SECRET_KEY makes them unreadable.",
                hint='Set MMM_SECRET_KEYS to a key from: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"',
                id="mmm.W001",
            )
        )
    if not settings.MMM_REQUIRE_AUTH:
        warnings.append(
            Warning(
                "MMM_REQUIRE_AUTH is off: anyone who reaches the gateway may register workers and call models.",
                hint="Unset MMM_REQUIRE_AUTH (it defaults to on) and create keys with manage.py create_api_key.",
                id="mmm.W002",
            )
        )
    return warnings
