"""deploy/docker-compose.yml and deploy/k8s/*.yaml: two replicas that share one Redis, with rules
that load, probes and flags that exist, without Docker or Kubernetes.

The files are parsed as YAML and held to what docs/deployment.md says of them; the rules they
mount are laid out as the container would see them and run through `responder check`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from responder.settings import DEFAULT_ADMIN_HOST, DEFAULT_ADMIN_PORT, DEFAULT_SHUTDOWN_GRACE_S
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
MANIFESTS = [COMPOSE, *K8S]
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
BUNDLED_RULES = REPO / "rules.yaml"
TEMPLATES = REPO / "templates"
SECRET = "test-secret-not-real"


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE)
    return doc  # type: ignore[no-any-return]


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for path in K8S for doc in documents(path) if doc.get("kind") == kind]


def responder_deployment() -> dict[str, Any]:
    (deployment,) = [d for d in k8s_objects("Deployment") if d["metadata"]["name"] == "responder"]
    return deployment


def responder_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "responder"
    ]
    return container


def compose_responders() -> dict[str, dict[str, Any]]:
    """The compose services that run `responder serve` (merge keys already resolved by PyYAML)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if (service.get("command") or [None])[0] == "serve"
    }


@cache
def serve_options() -> frozenset[str]:
    usage = subprocess.run(
        [sys.executable, "-m", "responder", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return frozenset(re.findall(r"(--[a-z][a-z-]+)", usage))


def option(argv: list[str], name: str, default: str) -> str:
    """The value of `name` in a serve argv (`--name VALUE` or `--name=VALUE`), else `default`."""
    for index, arg in enumerate(argv):
        if arg == name:
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def flags(argv: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}


def serve_argvs_in_docs() -> list[list[str]]:
    """Every `args: [serve, ...]` in docs/deployment.md's yaml blocks."""
    found = []
    for block in yaml_blocks_in_docs():
        stack = [yaml.safe_load(block)]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                if node and node[0] == "serve":
                    found.append([str(arg) for arg in node])
                stack.extend(node)
    return found


def yaml_blocks_in_docs() -> list[str]:
    return re.findall(r"```yaml\n(.*?)\n```", DEPLOYMENT_DOC.read_text(encoding="utf-8"), re.S)


def run_check(config: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DINGTALK_")}
    env.update(REDIS_URL=redis_url, DINGTALK_APP_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "responder", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def place(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination)
    else:
        shutil.copy2(source, destination)


# --- every file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(REPO)) for p in MANIFESTS])
def test_every_manifest_is_yaml_with_the_objects_it_should_hold(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} is empty"
    if path == COMPOSE:
        assert set(docs[0]) >= {"services"}
        return
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path.name}: {doc.get('kind')}"
        assert doc["metadata"].get("name"), f"{path.name}: a {doc['kind']} without a name"


def test_the_kubernetes_manifests_the_docs_name_are_there() -> None:
    assert {p.name for p in K8S} >= {"redis.yaml", "responder.yaml"}


# --- docker compose -----------------------------------------------------------------------------


def test_compose_runs_redis_and_two_responders_that_share_it() -> None:
    services = compose()["services"]
    redis = [name for name, s in services.items() if str(s.get("image", "")).startswith("redis:")]
    assert redis == ["redis"]
    responders = compose_responders()
    assert len(responders) >= 2, sorted(services)
    for name, service in responders.items():
        url = urlsplit(service["environment"]["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379), name
        assert "redis" in service["depends_on"], name
    ports = [port for service in responders.values() for port in service["ports"]]
    assert len(set(ports)) == len(ports) == len(responders), "each replica needs a host port of its own"
    assert all(port.startswith("127.0.0.1:") for port in ports), "a try-out publishes on loopback only"


def test_compose_builds_the_repositorys_dockerfile() -> None:
    for name, service in compose_responders().items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == REPO, name
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name


def test_compose_takes_the_secret_from_the_shell_and_never_holds_one() -> None:
    for name, service in compose_responders().items():
        assert re.fullmatch(
            r"\$\{DINGTALK_APP_SECRET:\?[^}]+\}", service["environment"]["DINGTALK_APP_SECRET"]
        ), name


def test_compose_gives_pending_replies_their_shutdown_grace() -> None:
    for name, service in compose_responders().items():
        grace = float(option(service["command"], "--shutdown-grace", str(DEFAULT_SHUTDOWN_GRACE_S)))
        stop = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert stop and int(stop.group(1)) > grace, name


def test_the_rules_compose_mounts_pass_responder_check(tmp_path: Path) -> None:
    """Each replica's /etc/responder, rebuilt from its volumes, loads: rules, templates and all."""
    for name, service in compose_responders().items():
        config = PurePosixPath(option(service["command"], "--config", "/etc/responder/rules.yaml"))
        root = tmp_path / name
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            inside = PurePosixPath(target).relative_to(config.parent)  # ValueError: mounted elsewhere
            place(COMPOSE.parent / source, root / inside)
        checked = run_check(root / config.name, service["environment"]["REDIS_URL"])
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
        assert ": OK," in checked.stdout, checked.stdout


def test_the_compose_rules_are_the_bundled_rules_plus_a_redis_state_block() -> None:
    """deploy/rules-redis.yaml is a copy (rules have no include): it must not drift from rules.yaml."""
    (mounted,) = {
        volume.split(":")[0]
        for service in compose_responders().values()
        for volume in service["volumes"]
        if volume.split(":")[1].endswith(".yaml")
    }
    copy = yaml.safe_load((COMPOSE.parent / mounted).read_text(encoding="utf-8"))
    bundled = yaml.safe_load(BUNDLED_RULES.read_text(encoding="utf-8"))
    assert copy.pop("state") == {"backend": "redis", "url": "${REDIS_URL}"}
    assert copy == bundled, "deploy/rules-redis.yaml differs from rules.yaml beyond its state block"


# --- Kubernetes ---------------------------------------------------------------------------------


def test_the_deployment_runs_two_replicas_and_rolls_without_going_below_them() -> None:
    spec = responder_deployment()["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_probes_ask_the_admin_listener_for_ready_and_healthy() -> None:
    container = responder_container(responder_deployment())
    argv = [str(arg) for arg in container["args"]]
    host = option(argv, "--admin-host", DEFAULT_ADMIN_HOST)
    admin = f"http://{host}:{option(argv, '--admin-port', str(DEFAULT_ADMIN_PORT))}"
    for probe, path in (("readinessProbe", "/-/ready"), ("livenessProbe", "/-/healthy")):
        command = " ".join(container[probe]["exec"]["command"])
        assert f"'{admin}{path}'" in command, f"{probe}: {command}"


def test_the_configmap_is_mounted_as_a_directory_where_the_config_lives() -> None:
    deployment = responder_deployment()
    container = responder_container(deployment)
    config = PurePosixPath(option([str(a) for a in container["args"]], "--config", "rules.yaml"))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert "subPath" not in mount and "subPathExpr" not in mount, "subPath mounts never receive updates"
    assert PurePosixPath(mount["mountPath"]) == config.parent
    items = {item["key"]: item["path"] for item in volumes[mount["name"]]["configMap"]["items"]}
    assert items.pop(config.name) == config.name
    # `kubectl create configmap --from-file=rules.yaml --from-file=templates/` makes one key per file.
    assert items == {p.name: f"templates/{p.name}" for p in TEMPLATES.iterdir() if p.is_file()}


def test_the_configmap_layout_loads_with_the_redis_rules(tmp_path: Path) -> None:
    """The bundled rules (with the state block) as the ConfigMap's items lay them out pass check."""
    deployment = responder_deployment()
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (items,) = [v["configMap"]["items"] for v in volumes if "configMap" in v]
    keys = {"rules.yaml": DEPLOY / "rules-redis.yaml"} | {p.name: p for p in TEMPLATES.iterdir()}
    for item in items:
        place(keys[item["key"]], tmp_path / item["path"])
    checked = run_check(tmp_path / "rules.yaml", "redis://responder-redis:6379/0")
    assert checked.returncode == 0, checked.stderr


def test_the_secrets_come_from_a_secret_and_never_from_the_manifest() -> None:
    env = {e["name"]: e for e in responder_container(responder_deployment())["env"]}
    for name in ("DINGTALK_APP_SECRET", "REDIS_URL"):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "responder", name
        assert not env[name]["valueFrom"]["secretKeyRef"].get("optional"), name


def test_the_pod_disruption_budget_and_the_service_select_the_deployments_pods() -> None:
    deployment = responder_deployment()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (budget,) = k8s_objects("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    services = [s for s in k8s_objects("Service") if s["spec"]["selector"].items() <= pod_labels.items()]
    assert [s["metadata"]["name"] for s in services] == ["responder"]
    container = responder_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = services[0]["spec"]["ports"]
    assert ports[port["targetPort"]] == int(option([str(a) for a in container["args"]], "--port", "8080"))


def test_the_trial_redis_is_what_the_docs_tell_redis_url_to_name() -> None:
    (service,) = [s for s in k8s_objects("Service") if s["metadata"]["name"] == "responder-redis"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == 6379
    assert "REDIS_URL=redis://responder-redis:6379/0" in DEPLOYMENT_DOC.read_text(encoding="utf-8")


def test_termination_waits_for_pre_stop_and_the_shutdown_grace() -> None:
    deployment = responder_deployment()
    container = responder_container(deployment)
    grace = float(
        option([str(a) for a in container["args"]], "--shutdown-grace", str(DEFAULT_SHUTDOWN_GRACE_S))
    )
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(command[1]) + grace


# --- flags --------------------------------------------------------------------------------------


def serve_argvs() -> list[tuple[str, list[str]]]:
    argvs = [(f"compose {name}", service["command"]) for name, service in compose_responders().items()]
    for path in K8S:
        for doc in documents(path):
            if doc["kind"] != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                args = [str(arg) for arg in container.get("args", [])]
                if args[:1] == ["serve"]:
                    argvs.append((f"{path.name} {container['name']}", args))
    argvs += [(f"docs/deployment.md yaml {i}", argv) for i, argv in enumerate(serve_argvs_in_docs())]
    return argvs


def test_every_serve_flag_used_is_one_serve_has() -> None:
    argvs = serve_argvs()
    assert len(argvs) >= 4  # two compose replicas, the Deployment, the docs' sidecar variant
    for where, argv in argvs:
        unknown = flags(argv) - serve_options()
        assert not unknown, f"{where}: responder serve has no {sorted(unknown)}"


def test_the_deployment_reloads_by_itself() -> None:
    argv = [str(a) for a in responder_container(responder_deployment())["args"]]
    assert "--watch" in argv, "kubelet swaps ConfigMap files without telling anyone"


def test_the_docs_yaml_blocks_parse_and_their_state_block_is_the_one_used() -> None:
    blocks = [yaml.safe_load(block) for block in yaml_blocks_in_docs()]
    states = [block["state"] for block in blocks if isinstance(block, dict) and "state" in block]
    rules = yaml.safe_load((DEPLOY / "rules-redis.yaml").read_text(encoding="utf-8"))
    assert states == [rules["state"]]
