"""Sessions: credentials, region, endpoint and config resolved the way boto3/botocore do.

botocore's own session does the resolving (profiles, env vars, credential
providers, config files), so a client here picks up exactly what a boto3
client would in the same environment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import botocore
import botocore.session
from botocore.config import Config
from botocore.configprovider import ConfiguredEndpointProvider
from botocore.credentials import Credentials
from botocore.endpoint_provider import EndpointProvider
from botocore.exceptions import (
    NoRegionError,
    PartialCredentialsError,
    UnknownRegionError,
    UnknownServiceError,
)
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url, validate_region_name

from openkvs import __version__
from openkvs.client.core import ClientSettings
from openkvs.client.retry import RetryPolicy
from openkvs.client.sync_client import KinesisVideoMediaClient

SERVICE_NAME = "kinesis-video-media"
USER_AGENT = f"openkvs/{__version__} botocore/{botocore.__version__}"

C = TypeVar("C")


class SessionBase(ABC, Generic[C]):
    """Like ``boto3.Session``; subclasses choose the transport of the clients they create."""

    def __init__(
        self,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        botocore_session: botocore.session.Session | None = None,
    ) -> None:
        self._session = botocore_session or botocore.session.Session(profile=profile_name)
        if aws_access_key_id or aws_secret_access_key or aws_session_token:
            self._session.set_credentials(
                aws_access_key_id, aws_secret_access_key, aws_session_token
            )
        if region_name is not None:
            self._session.set_config_variable("region", region_name)

    @property
    def region_name(self) -> str | None:
        region: str | None = self._session.get_config_variable("region")
        return region

    @property
    def profile_name(self) -> str:
        return str(self._session.profile or "default")

    def get_credentials(self) -> Any:
        return self._session.get_credentials()

    @abstractmethod
    def _make_client(self, settings: ClientSettings) -> C: ...

    def create_client(
        self,
        service_name: str,
        region_name: str | None = None,
        api_version: str | None = None,
        use_ssl: bool = True,
        verify: bool | str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        config: Config | None = None,
    ) -> C:
        """A ``kinesis-video-media`` client; arguments as ``boto3.Session.client``."""
        if service_name != SERVICE_NAME:
            raise UnknownServiceError(service_name=service_name, known_service_names=SERVICE_NAME)
        session = self._session
        default = session.get_default_client_config()
        if default is not None:
            config = default.merge(config) if config is not None else default
        config = config or Config()
        region = region_name or config.region_name or session.get_config_variable("region")
        validate_region_name(region)
        if region is None:
            raise NoRegionError()
        credentials = self._credentials(
            config, aws_access_key_id, aws_secret_access_key, aws_session_token
        )
        endpoint_url = endpoint_url or self._configured_endpoint(config)
        if endpoint_url is None:
            endpoint_url = self._default_endpoint(region, config, use_ssl)
        if not is_valid_endpoint_url(endpoint_url) and not is_valid_ipv6_endpoint_url(endpoint_url):
            raise ValueError(f"Invalid endpoint: {endpoint_url}")
        retry, retries = self._retries(config)
        settings = ClientSettings(
            service_model=session.get_service_model(SERVICE_NAME, api_version),
            region_name=region,
            endpoint_url=endpoint_url,
            partition=self._partition(region),
            credentials=credentials,
            config=config.merge(Config(region_name=region, retries=retries)),
            verify=session.get_config_variable("ca_bundle") if verify is None else verify,
            user_agent=_user_agent(config),
            retry=retry,
        )
        return self._make_client(settings)

    client = create_client

    def _credentials(
        self, config: Config, key: str | None, secret: str | None, token: str | None
    ) -> Any:
        """Explicit keys win; else the session's provider chain (env, profile, SSO, IMDS…)."""
        if config.signature_version is botocore.UNSIGNED:
            return None
        if key is not None and secret is not None:
            return Credentials(key, secret, token)
        if key is not None or secret is not None:
            missing = "aws_secret_access_key" if secret is None else "aws_access_key_id"
            raise PartialCredentialsError(provider="explicit", cred_var=missing)
        return self._session.get_credentials()

    def _retries(self, config: Config) -> tuple[RetryPolicy, dict[str, Any]]:
        """The policy, and ``meta.config.retries`` as botocore shows it (attempts only if set)."""
        env_attempts = self._session.get_config_variable("max_attempts")
        retry = RetryPolicy.from_config(
            config.retries, self._session.get_config_variable("retry_mode"), env_attempts
        )
        shown: dict[str, Any] = {"mode": retry.mode}
        if env_attempts is not None or {"max_attempts", "total_max_attempts"} & set(
            config.retries or {}
        ):
            shown["total_max_attempts"] = retry.max_attempts
        return retry, shown

    def _configured_endpoint(self, config: Config) -> str | None:
        """AWS_ENDPOINT_URL_KINESIS_VIDEO_MEDIA, AWS_ENDPOINT_URL or ``endpoint_url`` in the profile."""
        ignore = config.ignore_configured_endpoint_urls
        if ignore is None:
            ignore = self._session.get_config_variable("ignore_configured_endpoint_urls")
        if ignore:
            return None
        provider = ConfiguredEndpointProvider(
            full_config=self._session.full_config,
            scoped_config=self._session.get_scoped_config(),
            client_name=SERVICE_NAME,
        )
        url: str | None = provider.provide()
        return url

    def _default_endpoint(self, region: str, config: Config, use_ssl: bool) -> str:
        """botocore's endpoint rule set: ``https://kinesisvideo.{region}.amazonaws.com`` etc."""
        loader = self._session.get_component("data_loader")
        provider = EndpointProvider(
            loader.load_service_model(SERVICE_NAME, "endpoint-rule-set-1"),
            loader.load_data("partitions"),
        )
        url = str(
            provider.resolve_endpoint(
                Region=region,
                UseFIPS=bool(_option(self._session, config, "use_fips_endpoint")),
                UseDualStack=bool(_option(self._session, config, "use_dualstack_endpoint")),
            ).url
        )
        return url if use_ssl else "http://" + url.split("://", 1)[1]

    def _partition(self, region: str) -> str:
        try:
            return str(self._session.get_partition_for_region(region))
        except UnknownRegionError:
            return "aws"


def _option(session: botocore.session.Session, config: Config, name: str) -> object:
    value = getattr(config, name, None)
    return session.get_config_variable(name) if value is None else value


def _user_agent(config: Config) -> str:
    agent = config.user_agent or USER_AGENT
    if config.user_agent_extra:
        agent += f" {config.user_agent_extra}"
    if config.user_agent_appid:
        agent += f" app/{config.user_agent_appid}"
    return agent


class Session(SessionBase[KinesisVideoMediaClient]):
    """``boto3.Session`` for ``kinesis-video-media``: ``Session(...).create_client(...)``."""

    def _make_client(self, settings: ClientSettings) -> KinesisVideoMediaClient:
        return KinesisVideoMediaClient(settings)


def client(service_name: str, **kwargs: Any) -> KinesisVideoMediaClient:
    """``boto3.client`` for ``kinesis-video-media`` (credentials and region from the environment)."""
    return Session().create_client(service_name, **kwargs)
