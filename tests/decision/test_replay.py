"""Replay: timeline parsing, open-loop replay reproducing HPA decisions, CLI and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.commands.replay import TimelineError, format_csv, parse_csv, parse_timeline, replay
from autoscaler.decision.types import NoSignal, PodSamples, TargetSample

from .helpers import policy
from .schema import assert_valid

BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 60,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}],
    },
}
QPS = {
    "prometheus": {
        "name": "qps",
        "query": "q",
        "returns": "perPod",
        "target": {"type": "AverageValue", "averageValue": 10},
    }
}


def hpa_policy() -> Any:
    """hpa: qps AverageValue 10, up Pods 2/60 s (window 0), down Pods 1/30 s (window 60 s)."""
    return policy([QPS], min_replicas=1, max_replicas=10, behavior=BEHAVIOR)


def tick(t: float, current: int, values: list[float | None]) -> dict[str, Any]:
    """A tick with ``len(values)`` running pods; None = the pod has no sample."""
    pods = [
        {"name": f"p{i}", "phase": "Running", "ready": True}
        | ({} if v is None else {"metrics": {"qps": v}})
        for i, v in enumerate(values)
    ]
    return {"t": t, "currentReplicas": current, "pods": pods}


TIMELINE = {
    "ticks": [
        tick(0, 2, [20, 20]),
        tick(15, 4, [30, 30, None, None]),
        tick(75, 4, [25, 25, 25, 25]),
        tick(90, 6, [5] * 6),
        tick(150, 6, [5] * 6),
        tick(165, 5, [5] * 5),
        tick(180, 5, [5] * 5),
    ]
}

# Hand-computed with the HPA rules (see docs/decision.md):
EXPECTED = [
    # t=0: avg 20/10 = 2 -> ceil(2 x 2) = 4; first sight seeds (0, 2); up limit 2 + 2 = 4 -> 4
    4,
    # t=15: p2, p3 missing; avg 30 -> ratio 3 > 1 so missing count 0: (30+30+0+0)/4 = 15
    #   -> ratio 1.5 -> ceil(1.5 x 4) = 6; up event +2 @0 is inside 60 s: start 4 - 2 = 2,
    #   limit 2 + 2 = 4 = current -> 4 (ScaleUpLimit)
    4,
    # t=75: avg 25 -> ceil(2.5 x 4) = 10; the +2 @0 event is 75 s old (outside 60 s):
    #   start 4 -> limit 6 -> 6 (ScaleUpLimit)
    6,
    # t=90: avg 5 -> ceil(0.5 x 6) = 3; down window 60 s holds 10 @75 -> stabilized 6 -> 6
    6,
    # t=150: 10 @75 and 3 @90 are >= 60 s old -> 3; down limit: start 6 - 1 = 5 -> 5
    5,
    # t=165: wants 3; down event -1 @150 is inside 30 s: start 5 + 1 = 6 -> limit 5 = current
    5,
    # t=180: the -1 @150 event is 30 s old (outside, strict): start 5 -> limit 4 -> 4
    4,
]


def test_replay_reproduces_hpa_decisions() -> None:
    """Open-loop replay of the timeline gives the hand-computed HPA sequence."""
    pol = hpa_policy()
    rows = replay(pol, parse_timeline(TIMELINE, pol))
    assert [r.decision.desired_replicas for r in rows] == EXPECTED
    reasons = [r.decision.reason for r in rows]
    assert reasons[1] == "qps above target; held by ScaleUpLimit"
    assert reasons[3] == "All metrics below target; held by ScaleDownStabilized"
    assert reasons[5] == "All metrics below target; held by ScaleDownLimit"


def test_parse_per_pod_and_whole_target_metrics() -> None:
    """Per-pod metrics become PodSamples (absent = missing, null = rejected); top-level ones
    TargetSamples; null = no signal."""
    pol = policy(
        [
            QPS,
            {"interTokenLatency": {"name": "itl", "target": {"type": "Value", "value": 0.03}}},
        ]
    )
    data = {
        "ticks": [
            {
                "t": 5,
                "currentReplicas": 2,
                "statusReplicas": 3,
                "pods": [
                    {"name": "a", "metrics": {"qps": 1.5}},
                    {"name": "b", "metrics": {"qps": None}},
                    {"name": "c", "phase": "Pending", "ready": False, "createdAt": 1},
                ],
                "metrics": {"itl": 0.021},
            },
            {"t": 20, "currentReplicas": 2, "metrics": {"itl": None}},
        ]
    }
    ticks = parse_timeline(data, pol)
    first = ticks[0].observation
    qps = first.metrics["qps"]
    assert isinstance(qps, PodSamples)
    assert dict(qps.values) == {"a": 1.5}
    assert set(qps.rejected) == {"b"}
    assert first.metrics["itl"] == TargetSample(0.021, timestamp=5.0)
    assert (first.spec_replicas, first.status_replicas) == (2, 3)
    assert first.pods[2].created_at == 1.0
    assert isinstance(ticks[1].observation.metrics["itl"], NoSignal)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ticks": [{"currentReplicas": 1}]}, "ticks[0].t: missing"),
        ({"ticks": [{"t": 0}]}, "ticks[0].currentReplicas: missing"),
        ({"ticks": [{"t": 0, "currentReplicas": -1}]}, "ticks[0].currentReplicas"),
        (
            {"ticks": [{"t": 0, "currentReplicas": 1}, {"t": 5, "currentReplicas": "x"}]},
            "ticks[1].currentReplicas: expected an integer",
        ),
        (
            {"ticks": [{"t": 0, "currentReplicas": 1, "pods": [{"name": "a", "phase": "Up"}]}]},
            "ticks[0].pods[0].phase",
        ),
        (
            {"ticks": [{"t": 0, "currentReplicas": 1, "pods": [{"metrics": {}}]}]},
            "ticks[0].pods[0].name",
        ),
        (
            {"ticks": [{"t": 10, "currentReplicas": 1}, {"t": 5, "currentReplicas": 1}]},
            "ticks[1].t: 5 is before",
        ),
        (
            {"ticks": [{"t": 0, "currentReplicas": 1, "metrics": {"qps": "high"}}]},
            "ticks[0].metrics.qps",
        ),
        ({"nope": []}, "expected an object with a 'ticks' list"),
    ],
)
def test_bad_timeline_names_tick_and_field(data: object, message: str) -> None:
    """Malformed input raises TimelineError naming the tick index and field."""
    with pytest.raises(TimelineError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_timeline(data, hpa_policy())


def test_csv_timeline() -> None:
    """CSV: whole-target values, empty cell = no signal, statusReplicas ready pods."""
    value_policy = policy(
        [
            {
                "prometheus": {
                    "name": "rate",
                    "query": "q",
                    "target": {"type": "Value", "value": 100},
                }
            }
        ],
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    text = "t,currentReplicas,rate\n0,2,300\n15,6,\n30,6,120\n"
    ticks = parse_csv(text, value_policy)
    assert len(ticks[0].observation.pods) == 2
    assert isinstance(ticks[1].observation.metrics["rate"], NoSignal)
    rows = replay(value_policy, ticks)
    # t=0: 300/100 = 3 x 2 ready = 6; default up limits Pods 2 + 4 = 6, Percent 2 x 2 = 4,
    #   Max -> 6. t=15: no signal -> hold 6. t=30: 1.2 x 6 ready = 7.2 -> 8; the +4 event at
    #   t=0 is 30 s old, outside the 15 s periods: start 6 -> Pods 10, Percent 12 -> 8 fits.
    assert [r.decision.desired_replicas for r in rows] == [6, 6, 8]
    out = format_csv(rows, value_policy).splitlines()
    assert out[0] == "t,currentReplicas,desiredReplicas,reason,rate.value,rate.proposal"
    assert out[2].endswith(",,")  # no signal: empty value and proposal


def test_csv_bad_cell_names_row_and_column() -> None:
    """A non-number cell names the tick index and the column."""
    with pytest.raises(TimelineError, match=r"ticks\[1\]\.currentReplicas"):
        parse_csv("t,currentReplicas\n0,1\n15,two\n", hpa_policy())


def write_policy(tmp_path: Path) -> Path:
    """The hpa policy as a YAML file."""
    doc = {
        "apiVersion": "nim-autoscaler/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "replay", "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "algorithm": "hpa",
            "metrics": [QPS],
            "behavior": BEHAVIOR,
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``replay -o json`` prints one object per tick with the required keys."""
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps(TIMELINE), encoding="utf-8")
    code = main(
        [
            "replay",
            "--policy",
            str(write_policy(tmp_path)),
            "--timeline",
            str(timeline),
            "-o",
            "json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert_valid(row)
    assert [r["desiredReplicas"] for r in rows] == EXPECTED
    assert {"t", "currentReplicas", "desiredReplicas", "reason", "explanation"} <= set(rows[0])
    assert rows[0]["explanation"]["desiredReplicas"] == 4


def test_cli_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default table marks ticks that scale."""
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps(TIMELINE), encoding="utf-8")
    code = main(["replay", "--policy", str(write_policy(tmp_path)), "--timeline", str(timeline)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == ["t", "current", "desired", "reason"]
    assert lines[1].split()[:3] == ["0", "2", "4*"]
    assert len(lines) == 1 + len(EXPECTED)


def test_cli_bad_timeline_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad timeline prints the tick index and field and exits 1."""
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"ticks": [{"t": 0, "currentReplicas": 1.5}]}), "utf-8")
    code = main(["replay", "--policy", str(write_policy(tmp_path)), "--timeline", str(timeline)])
    assert code == 1
    assert "ticks[0].currentReplicas" in capsys.readouterr().err


def test_cli_bad_policy_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid policy file prints the loader's located errors and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: nim-autoscaler/v1alpha1\nkind: ScalingPolicy\n", "utf-8")
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps(TIMELINE), encoding="utf-8")
    assert main(["replay", "--policy", str(bad), "--timeline", str(timeline)]) == 1
    assert "bad.yaml" in capsys.readouterr().err
