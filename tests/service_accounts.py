"""An API client that is a ServiceAccount: a fresh token from the TokenRequest API, so the API server's RBAC
decides what the test's caller may do, exactly as it would for AMOS or a person."""

from __future__ import annotations

from kubernetes import client

from tests.manifests import as_body


def token_client(api_client: client.ApiClient, namespace: str, account: str, seconds: int = 3600) -> client.ApiClient:
    """A new ApiClient authenticated as ServiceAccount `namespace/account` against `api_client`'s server."""
    status = (
        client.CoreV1Api(api_client)
        .create_namespaced_service_account_token(account, namespace, as_body({"spec": {"expirationSeconds": seconds}}))
        .status
    )
    assert status is not None and status.token is not None
    configuration = client.Configuration()
    configuration.host = api_client.configuration.host
    configuration.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    configuration.api_key = {"BearerToken": status.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)
