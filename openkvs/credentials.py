"""Where client tools get keys and a region when the user configured none."""

from __future__ import annotations

import botocore.session
from botocore.credentials import Credentials

DEFAULT_REGION = "us-west-2"


def resolve(
    session: botocore.session.Session,
    access_key: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
) -> tuple[Credentials, bool, str]:
    """Explicit keys, else botocore's chain, else development keys; and the region.

    The flag says the development keys were chosen: a server in development mode
    accepts any signature, so the tools work against it with nothing configured.
    """
    region = session.get_config_variable("region") or DEFAULT_REGION
    if access_key and secret_key:
        return Credentials(access_key, secret_key, token), False, region
    found = session.get_credentials()
    if found is None:
        return Credentials("openkvs", "openkvs"), True, region
    return found, False, region
