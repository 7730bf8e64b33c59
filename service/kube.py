"""Connecting to the cluster with errors a person can act on, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException


class ClusterUnavailable(Exception):
    """No usable cluster: the message says what was tried and what to do."""


def connect(kubeconfig: Path | None, *, check: bool = True) -> client.ApiClient:
    """An ApiClient from `kubeconfig`, else in-cluster config, else ~/.kube/config; checked with one request."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            if not kubeconfig.exists():
                raise ClusterUnavailable(f"kubeconfig {kubeconfig} does not exist (set KUBECONFIG or --kubeconfig)")
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except ConfigException as error:
        raise ClusterUnavailable(f"no usable Kubernetes configuration: {error}") from error
    configuration.retries = urllib3.Retry(total=2, connect=2, read=0, backoff_factor=0.2)
    configuration.connection_pool_maxsize = 16
    api = client.ApiClient(configuration)
    if check:
        try:
            client.VersionApi(api).get_code(_request_timeout=5)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailable(f"API server {configuration.host} is unreachable: {error}") from error
        except ApiException as error:
            raise ClusterUnavailable(f"API server {configuration.host} refused us: {error.status} {error.reason}") \
                from error
    return api
