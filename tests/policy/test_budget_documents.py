"""ScalingBudget documents: loaded beside the policies, located errors, `validate` reports them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.policy.loader import PolicyDirectory, load_text

POLICY = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: llama, namespace: nim-service}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama}
  minReplicas: 2
  maxReplicas: 8
  priority: 5
  gpusPerReplica: 4
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.7}}
"""

BUDGET = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingBudget
metadata: {name: h100-pool}
spec:
  maxGpus: 16
  namespaces: [nim-service]
"""


class TestLoading:
    def test_budget_beside_policies(self) -> None:
        """A file may hold policies and budgets; both are loaded."""
        result = load_text(POLICY + "---\n" + BUDGET, "fleet.yaml")
        assert result.ok
        assert [p.key for p in result.policies] == ["nim-service/llama"]
        [budget] = result.budgets
        assert (budget.key, budget.budget.spec.max_gpus) == ("h100-pool", 16)
        assert budget.location.line == 13
        assert result.policies[0].policy.spec.priority == 5

    @pytest.mark.parametrize(
        ("edit", "message", "line"),
        [
            pytest.param(("maxGpus: 16", "maxGpus: -1"), "greater than or equal to 0", 5, id="neg"),
            pytest.param(("maxGpus: 16", "maxGPUs: 16"), "did you mean 'maxGpus'", 5, id="typo"),
            pytest.param(
                ("namespaces: [nim-service]", "namespaces: [a, a]"), "listed once", 6, id="dup"
            ),
            pytest.param(
                ("nim-autoscaler/v1alpha1", "v2"), "apiVersion must be", 1, id="api-version"
            ),
        ],
    )
    def test_errors_name_file_line_and_field(
        self, edit: tuple[str, str], message: str, line: int
    ) -> None:
        """A bad budget is reported at its line and field, like a bad policy."""
        result = load_text(BUDGET.replace(*edit), "budget.yaml")
        assert not result.ok
        error = next(e for e in result.all_errors() if message in e.message)
        assert error.location is not None
        assert (error.location.file, error.location.line) == ("budget.yaml", line)

    def test_same_name_twice_is_an_error(self, tmp_path: Path) -> None:
        """Budget names are unique across the directory."""
        (tmp_path / "a.yaml").write_text(BUDGET)
        (tmp_path / "b.yaml").write_text(BUDGET)
        result = PolicyDirectory(tmp_path).reload()
        assert [e.file for e in result.errors] == [str(tmp_path / "b.yaml")]
        assert "already defined" in result.all_errors()[0].message
        assert [b.key for b in result.budgets] == ["h100-pool"]

    def test_bad_edit_keeps_the_last_good_budget(self, tmp_path: Path) -> None:
        """Hot reload: a broken budget file keeps its last good version in force."""
        path = tmp_path / "budget.yaml"
        path.write_text(BUDGET)
        directory = PolicyDirectory(tmp_path)
        assert [b.budget.spec.max_gpus for b in directory.reload().budgets] == [16]
        path.write_text(BUDGET.replace("maxGpus: 16", "maxGpus: lots"))
        result = directory.reload()
        assert not result.ok
        assert [b.budget.spec.max_gpus for b in result.budgets] == [16]


class TestValidate:
    def test_text_report_and_warning(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate lists the budget, what it covers, and warns when minima exceed it."""
        (tmp_path / "llama.yaml").write_text(POLICY)
        (tmp_path / "budget.yaml").write_text(BUDGET.replace("maxGpus: 16", "maxGpus: 4"))
        code = main(["validate", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 0
        assert "OK    budget h100-pool: 4 GPUs for 1 policies" in out
        assert "minReplicas of its policies alone need 8 GPUs" in out

    def test_json_report(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json carries the budgets and the policies each covers."""
        (tmp_path / "llama.yaml").write_text(POLICY)
        (tmp_path / "budget.yaml").write_text(BUDGET.replace("[nim-service]", "[elsewhere]"))
        assert main(["validate", "-o", "json", str(tmp_path)]) == 0
        doc = json.loads(capsys.readouterr().out)
        [budget] = doc["budgets"]
        assert budget["policies"] == []
        assert budget["warnings"] == ["budget h100-pool covers no policy"]
