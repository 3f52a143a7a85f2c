"""``nim-autoscaler schema``: print the policy JSON Schema or the Kubernetes CRD.

The JSON Schema (:mod:`autoscaler.policy.schema`) is for editors checking policy files; with
``--crd`` the CustomResourceDefinition of ScalingPolicy resources (:mod:`autoscaler.policy.crd`),
as committed in ``charts/nim-autoscaler/crds/``. Both come from the same pydantic models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoscaler.policy.crd import crd_yaml
from autoscaler.policy.schema import policy_schema_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--output`` and ``--crd``."""
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the schema to FILE instead of standard output",
    )
    parser.add_argument(
        "--crd",
        action="store_true",
        help="print the ScalingPolicy CustomResourceDefinition (YAML) instead of the JSON Schema",
    )


def run(args: argparse.Namespace) -> int:
    """Print (or write) the schema; 0 on success, 1 if the file cannot be written."""
    text = crd_yaml() if getattr(args, "crd", False) else policy_schema_json()
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(
                f"nim-autoscaler schema: cannot write {args.output}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0
