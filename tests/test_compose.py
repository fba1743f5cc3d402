"""docker-compose.temporal.yml is for users; CI has no Docker engine, so it is checked by parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_compose_file_defines_the_production_like_stack() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.temporal.yml").read_text())
    services = compose["services"]
    assert {
        "temporal",
        "temporal-ui",
        "temporal-db",
        "app-db",
        "redis",
        "gateway",
        "worker",
    } <= set(services)
    assert services["worker"]["command"] == ["llmflow", "worker"]
    assert services["gateway"]["command"][:2] == ["llmflow", "api"]
    assert (
        "8000:8000" in services["gateway"]["ports"] and "7233:7233" in services["temporal"]["ports"]
    )
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert (REPO / services["worker"]["build"] / "Dockerfile").exists()


def test_compose_only_sets_configuration_names_the_service_reads() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.temporal.yml").read_text())
    known = {name.upper() for name in Settings.model_fields} | {"GOOGLE_SERVICES_API_KEY"}
    for name in ("worker", "gateway"):
        env = compose["services"][name]["environment"]
        unknown = sorted(set(env) - known)
        assert unknown == [], f"{name} sets variables llmflow does not read: {unknown}"
        # Secrets are passed through from the caller's environment, never written here.
        for key in ("OPENROUTER_API_KEY", "LLM_WEBHOOK_SECRET"):
            if key in env:
                assert str(env[key]).startswith("${")


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path → host path (relative to the repository) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("./"):
            out[container] = REPO / host
    return out


def test_prometheus_and_grafana_load_the_committed_monitoring_files() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.temporal.yml").read_text())
    services = compose["services"]
    assert {"prometheus", "grafana"} <= set(services)
    assert {"prometheus", "grafana"} <= set(compose["volumes"])  # data survives a restart

    # Prometheus: its config file is mounted where its command reads it, and scrapes both.
    prometheus = services["prometheus"]
    prom_mounts = mounts(prometheus)
    config_path = next(
        a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    assert prom_mounts[config_path] == REPO / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(prom_mounts[config_path].read_text())
    targets = {
        job["job_name"]: [(n, sd["port"]) for sd in job["dns_sd_configs"] for n in sd["names"]]
        for job in config["scrape_configs"]
    }
    gateway_port = int(services["gateway"]["environment"]["PORT"])
    worker_env = services["worker"]["environment"]
    assert targets["llmflow-gateway"] == [("gateway", gateway_port)]
    assert targets["llmflow-worker"] == [("worker", int(worker_env["WORKER_METRICS_PORT"]))]
    assert worker_env["WORKER_METRICS_HOST"] == "0.0.0.0"  # reachable from the prometheus service

    # Grafana: data source and dashboard provisioned, the dashboard file where the provider looks.
    grafana = services["grafana"]
    graf_mounts = mounts(grafana)
    provisioning = "/etc/grafana/provisioning"
    datasources = graf_mounts[f"{provisioning}/datasources"]
    dashboards = graf_mounts[f"{provisioning}/dashboards"]
    assert datasources == REPO / "deploy/grafana/provisioning/datasources"
    assert dashboards == REPO / "deploy/grafana/provisioning/dashboards"
    source = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((dashboards / "llmflow.yml").read_text())["providers"][0]
    dashboard_file = graf_mounts[f"{provider['options']['path']}/llmflow.json"]
    assert dashboard_file == REPO / "deploy/grafana/llmflow.json"
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        f"{provider['options']['path']}/llmflow.json"
    )
    dashboard = json.loads(dashboard_file.read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"] if p.get("type") != "row"} | {
        t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])
    }
    assert used == {source["uid"]}
    for path in [*prom_mounts.values(), *graf_mounts.values()]:
        assert path.exists(), f"{path} is mounted but missing"
