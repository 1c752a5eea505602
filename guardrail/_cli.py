"""The `guardrail` command: a thin shell over the library.

    guardrail check "How do I bake bread?"                 # input stage
    guardrail check --prompt "Hi" --response "Hello!"      # output stage
    guardrail check TEXT --policy hate --policy sexual --config guard.toml --json --show-prompt

Exit status: 0 allowed (flags included), 1 blocked or rewritten, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from guardrail._config import load_config
from guardrail._exceptions import GuardrailError
from guardrail._policies import Stage

if TYPE_CHECKING:
    from guardrail._scoring import Scorer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardrail", description="ShieldGemma-style guardrail checks.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="score text against policies")
    check.add_argument("text", nargs="?", help="user input to check (input stage)")
    check.add_argument("--prompt", help="the user prompt, with --response (output stage)")
    check.add_argument("--response", help="the model response to check (output stage)")
    check.add_argument("--policy", action="append", default=[], metavar="NAME",
                       help="a policy to check (repeatable; default: the configured or the four built-ins)")
    check.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.add_argument("--show-prompt", action="store_true",
                       help="print the exact prompt sent to the model for each policy")
    return parser


def _messages(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list[dict[str, str]], Stage]:
    if args.response is not None:
        if args.text is not None:
            parser.error("give TEXT, or --prompt with --response, not both")
        prompt = args.prompt or ""
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": args.response}], Stage.OUTPUT
    if args.prompt is not None:
        parser.error("--prompt needs --response (for input checks pass TEXT)")
    if args.text is None:
        parser.error("nothing to check: give TEXT, or --prompt and --response")
    return [{"role": "user", "content": args.text}], Stage.INPUT


def _table(verdict_dict: dict, out: TextIO) -> None:
    rows = [("policy", "P(Yes)", "threshold", "decision")]
    for d in verdict_dict["decisions"]:
        decision = d["action"] if d["triggered"] else "allow"
        rows.append((d["policy"], f"{d['score']:.4f}", f"{d['threshold']:.2f}", decision))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    out.write(f"{verdict_dict['stage']}: {verdict_dict['outcome']}\n")


def main(argv: Sequence[str] | None = None, *, scorer: Scorer | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status. `scorer` replaces the configured one (for tests)."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    messages, stage = _messages(args, parser)
    try:
        config = load_config(args.config)
        if args.policy:
            config = config.select(args.policy)
        guard = config.build_guard(scorer=scorer)
        requests = guard.requests(messages, stage)
        verdict = guard.check(messages, stage)
    except GuardrailError as exc:
        print(f"guardrail: error: {exc}", file=sys.stderr)
        return 2
    result = verdict.to_dict()
    # Decisions come in request order; the model sees one BOS token before each prompt.
    prompts = ["<bos>" + r.prompt for r in requests]
    if args.json:
        if args.show_prompt:
            for decision, text in zip(result["decisions"], prompts):
                decision["prompt"] = text
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        if args.show_prompt:
            for decision, text in zip(result["decisions"], prompts):
                out.write(f"----- prompt for policy {decision['policy']} ({stage.value}) -----\n{text}")
            out.write("----- end of prompts -----\n")
        _table(result, out)
    return 0 if verdict.allowed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
