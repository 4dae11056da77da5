"""deploy/k8s/components/recordings: the opt-in Kustomize component that gives every edge a
shared ReadWriteMany volume for RECORDINGS_DIR (docs/recordings.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.deploy import (
    DEPLOY,
    K8S_BASE,
    K8S_OVERLAY,
    component_documents,
    find,
    load_yaml_all,
    variables_read_by,
)

COMPONENT = DEPLOY / "k8s" / "components" / "recordings"


def test_the_component_mounts_one_shared_claim_where_recordings_dir_points() -> None:
    docs = component_documents(COMPONENT)
    claim = find(docs, "PersistentVolumeClaim", "switchboard-recordings")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every edge pod mounts it"
    pod = find(docs, "Deployment", "switchboard-edge")["spec"]["template"]["spec"]
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == "switchboard-recordings"
    (container,) = pod["containers"]
    base = find(load_yaml_all(K8S_BASE / "edge.yaml"), "Deployment", "switchboard-edge")
    assert container["name"] == base["spec"]["template"]["spec"]["containers"][0]["name"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"] and not mount.get("readOnly")
    config = find(docs, "ConfigMap", "switchboard-edge")["data"]
    assert config == {"RECORDINGS_DIR": mount["mountPath"]}
    assert set(config) <= variables_read_by("edge")


def test_the_example_overlay_offers_the_component() -> None:
    text = (K8S_OVERLAY / "kustomization.yaml").read_text()
    assert "#   - ../../components/recordings" in text
    assert (K8S_OVERLAY / "../../components/recordings").resolve() == COMPONENT.resolve()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_an_overlay_with_the_component_renders_a_mounted_claim(tmp_path: Path) -> None:
    k8s = os.path.relpath(DEPLOY / "k8s", tmp_path)  # kustomize takes relative paths only
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"{k8s}/overlays/example"],
                "components": [f"{k8s}/components/recordings"],
            }
        )
    )
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    pod = find(rendered, "Deployment", "switchboard-edge")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert {"tmp", "agents", "recordings"} <= set(volumes), "the base's volumes are kept"
    mounts = {mount["name"]: mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
    config = find(rendered, "ConfigMap", "switchboard-edge")["data"]
    assert config["RECORDINGS_DIR"] == mounts["recordings"]
    assert "PUBLIC_URL" in config, "merged into the overlay's settings, not replacing them"
    find(rendered, "PersistentVolumeClaim", "switchboard-recordings")
