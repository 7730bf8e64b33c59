"""Connecting to the cluster with errors a person can act on, not tracebacks."""

from __future__ import annotations

import logging
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

REQUEST_TIMEOUT_SECONDS = 5.0


class KubeconfigInvalid(Exception):
    """The kubeconfig is missing or unreadable: a configuration error (exit 2), not an outage."""


class ClusterUnavailable(Exception):
    """The cluster did not answer or refused us: the message says what was tried and what to do (exit 3)."""


def load_configuration(kubeconfig: Path | None) -> client.Configuration:
    """`kubeconfig`, else in-cluster config, else ~/.kube/config; every failure is one `KubeconfigInvalid` line."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            if not kubeconfig.exists():
                raise KubeconfigInvalid(f"kubeconfig {kubeconfig} does not exist (set KUBECONFIG or --kubeconfig)")
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException as error:
        raise KubeconfigInvalid(f"no usable Kubernetes configuration: {_first_line(error)}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or _first_line(error)
        raise KubeconfigInvalid(
            f"kubeconfig {kubeconfig or '~/.kube/config'} is not valid YAML{where}: {problem}"
        ) from error
    except (TypeError, KeyError, AttributeError, ValueError) as error:
        raise KubeconfigInvalid(
            f"kubeconfig {kubeconfig or '~/.kube/config'} is malformed: {type(error).__name__}: {_first_line(error)}"
        ) from error
    return configuration


# The watcher holds about a dozen long-lived watch streams per watched namespace (or one set for all);
# the orchestrator, the outbox and the lease need room beside them.
WATCH_STREAMS_PER_SCOPE = 12
OTHER_CONNECTIONS = 24


def connect(kubeconfig: Path | None, *, check: bool = True, namespaces: int = 1) -> client.ApiClient:
    """An ApiClient for `kubeconfig` (see `load_configuration`), checked with one request unless `check=False`.

    `namespaces`: how many namespaces are watched one by one (1 when all are watched at once).
    """
    configuration = load_configuration(kubeconfig)
    configuration.retries = urllib3.Retry(total=2, connect=2, read=0, backoff_factor=0.2)
    configuration.connection_pool_maxsize = WATCH_STREAMS_PER_SCOPE * max(1, namespaces) + OTHER_CONNECTIONS
    api = client.ApiClient(configuration)
    # urllib3 logs each retry as a warning; the outcome is reported once, as one line, by the caller.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    if check:
        try:
            client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT_SECONDS)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            reason = getattr(error, "reason", None) or error  # MaxRetryError wraps the connection error
            raise ClusterUnavailable(
                f"API server {configuration.host} is unreachable: {_first_line(reason).rpartition('): ')[2]}"
            ) from error
        except ApiException as error:
            raise ClusterUnavailable(
                f"API server {configuration.host} refused us: {error.status} {error.reason}"
            ) from error
    return api


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n")[:1]).strip()
    return text[:300] or type(error).__name__
