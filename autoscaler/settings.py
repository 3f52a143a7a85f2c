"""Controller settings: the only module that reads the environment.

Built once in :mod:`autoscaler.cli` (environment variables with the ``AUTOSCALER_`` prefix, then CLI
flags on top) and passed down. Priority: explicit keyword arguments (CLI flags) > environment >
defaults. ``KUBECONFIG`` and the in-cluster service account select the cluster; they are read by
the Kubernetes client configuration in :mod:`autoscaler.kube`, from the values held here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogFormat = Literal["json", "console", "auto"]
LogLevel = Literal["debug", "info", "warning", "error"]


class HpaSettings(BaseSettings):
    """The kube-controller-manager flags that change HPA decisions, as the autoscaler takes them.

    Read by every command that decides (``run``, ``explain``, ``replay``, ``simulate``), so a
    cluster that sets ``--horizontal-pod-autoscaler-tolerance`` or
    ``--horizontal-pod-autoscaler-downscale-stabilization`` gets the same decisions here when the
    same values are given. :class:`Settings` includes these fields. The defaults are the
    flags' own (:class:`autoscaler.decision.resolved.HpaFlags` carries them to the core).
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTOSCALER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        populate_by_name=True,
    )

    hpa_tolerance: float = Field(
        0.1,
        ge=0,
        description="Like --horizontal-pod-autoscaler-tolerance: the dead band around each "
        "metric's target (0.1 = 10 %) in both directions; a policy's behavior.scaleUp/scaleDown "
        "tolerance wins for its direction.",
    )
    hpa_downscale_stabilization: int = Field(
        300,
        ge=0,
        description="Like --horizontal-pod-autoscaler-downscale-stabilization, in seconds: the "
        "scale-down stabilization window of policies without behavior, and of policies whose "
        "behavior leaves scaleDown.stabilizationWindowSeconds unset.",
    )


class Settings(HpaSettings):
    """Everything the controller can be configured with.

    Every field maps to ``AUTOSCALER_<FIELD>`` (upper case), e.g. ``AUTOSCALER_PROMETHEUS_URL``.
    """

    # --- Prometheus -------------------------------------------------------------------------
    prometheus_url: str = Field(
        "http://localhost:9090",
        description="Base URL of the Prometheus HTTP API, including any path prefix "
        "(e.g. https://mimir.example/prometheus).",
    )
    prometheus_bearer_token_file: Path | None = Field(
        None, description="File holding a bearer token; re-read when it changes."
    )
    prometheus_username: str | None = Field(None, description="Basic-auth user name.")
    prometheus_password: SecretStr | None = Field(None, description="Basic-auth password.")
    prometheus_ca_file: Path | None = Field(None, description="CA bundle for TLS verification.")
    prometheus_insecure_skip_verify: bool = Field(
        default=False, description="Skip TLS certificate verification (testing only)."
    )
    prometheus_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Extra HTTP headers, e.g. X-Scope-OrgID for Mimir/Cortex/Thanos tenants. "
        "Environment form: 'Name=value,Other=value' or a JSON object.",
    )
    prometheus_timeout: float = Field(
        5.0, gt=0, description="Timeout of one PromQL query, seconds."
    )
    prometheus_concurrency: int = Field(
        8, ge=1, le=64, description="PromQL queries in flight at once."
    )

    # --- Policies and loop ------------------------------------------------------------------
    policy_dir: Path = Field(
        Path("policies"), description="Directory (or file) of ScalingPolicy YAML documents."
    )
    interval: float = Field(15.0, gt=0, description="Control loop period, seconds.")
    align_to_rules: bool = Field(
        default=True,
        description="Where the policies read recording rules, start each tick just after their "
        "rule group has evaluated (read from Prometheus's /api/v1/rules), when the interval is a "
        "whole number of the group's intervals: fresher recorded values, and no queries while "
        "Prometheus evaluates the group.",
    )
    dry_run: bool = Field(
        default=False, description="Decide and print, but never write to the cluster."
    )
    drain_aware: bool = Field(
        default=True,
        description="Before a scale-down, set controller.kubernetes.io/pod-deletion-cost so the "
        "ReplicaSet removes the pods with the least work (needs 'patch' on pods).",
    )

    # --- Logging and observability ----------------------------------------------------------
    log_format: LogFormat = Field(
        "auto", description="json, console, or auto (console on a terminal, JSON otherwise)."
    )
    log_level: LogLevel = Field("info", description="Minimum log level.")
    metrics_port: int = Field(
        8080, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz (0: off)."
    )
    metrics_bind_address: str = Field(
        "0.0.0.0",  # noqa: S104 - in-cluster the probes and Prometheus reach the pod IP
        description="Address the metrics/health server binds to.",
    )

    # --- Kubernetes -------------------------------------------------------------------------
    kubeconfig: Path | None = Field(
        None,
        validation_alias="KUBECONFIG",
        description="kubeconfig file; absent: in-cluster service account, then ~/.kube/config.",
    )
    kube_context: str | None = Field(None, description="kubeconfig context to use.")
    leader_election: bool = Field(
        default=True, description="Elect one writer among replicas through a Lease."
    )
    leader_election_namespace: str = Field(
        "default", description="Namespace of the Lease (normally the controller's own)."
    )
    leader_election_lease_name: str = Field("nim-autoscaler", description="Name of the Lease.")
    leader_election_lease_duration: float = Field(15.0, gt=0, description="Seconds.")
    leader_election_renew_deadline: float = Field(10.0, gt=0, description="Seconds.")
    leader_election_retry_period: float = Field(2.0, gt=0, description="Seconds.")
    shards: int = Field(
        1,
        ge=1,
        le=1024,
        description=(
            "Controller shards: with more than one, the policies are split across replicas by "
            "namespace (crc32(namespace) % shards), one Lease per shard "
            "(<lease>-shard-<i>), each replica owning a fair share. Fixed per cluster. "
            "1: one leader for all policies (the Lease <lease>)."
        ),
    )
    history_configmap: str = Field(
        "nim-autoscaler-history",
        description=(
            "Base name of the ConfigMaps (in the leader-election namespace) holding the decision "
            "history: <name>-0 .. <name>-<shards-1>."
        ),
    )
    history_shards: int = Field(
        8,
        ge=1,
        le=256,
        description=(
            "Number of history ConfigMaps; policies are spread over them by a stable hash. "
            "Keep it fixed for a cluster; about one per 500 policies."
        ),
    )
    history_save_interval: float = Field(
        60.0,
        ge=0,
        description=(
            "Seconds between writes of a history ConfigMap whose policies only added "
            "recommendations or learned capacity (a scale event is written at once). A restart "
            "loses at most this much of them; 0: write every tick."
        ),
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch (comma-separated in the environment); empty: all.",
    )
    identity: str = Field(
        default_factory=lambda: os.environ.get("HOSTNAME", "nim-autoscaler"),
        description="This instance's identity in the Lease (defaults to the pod name).",
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("prometheus_headers", mode="before")
    @classmethod
    def _parse_headers(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            if text.startswith("{"):
                import json  # noqa: PLC0415 - only for this rare form

                return json.loads(text)
            headers: dict[str, str] = {}
            for part in text.split(","):
                name, sep, val = part.partition("=")
                if not sep or not name.strip():
                    msg = f"expected 'Name=value' in AUTOSCALER_PROMETHEUS_HEADERS, got {part!r}"
                    raise ValueError(msg)
                headers[name.strip()] = val.strip()
            return headers
        return value
