"""`import guardrail` is cheap and side-effect free."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_loads_no_heavy_modules() -> None:
    code = (
        "import sys, json, os; env = dict(os.environ); import guardrail, guardrail.testing, guardrail._cli, guardrail.classifier; "
        "print(json.dumps({'mods': sorted({m.split('.')[0] for m in sys.modules}), 'env_same': env == dict(os.environ)}))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    heavy = {"torch", "transformers", "langchain", "langchain_core", "openai", "peft", "accelerate", "numpy",
             "starlette", "uvicorn", "prometheus_client"}  # the service's stack loads with guardrail.serve only
    assert heavy.isdisjoint(out["mods"]), heavy & set(out["mods"])
    assert out["env_same"]


def test_public_api_is_flat_and_sorted() -> None:
    import guardrail

    import guardrail.classifier

    for module in (guardrail, guardrail.classifier):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None
