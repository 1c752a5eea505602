"""The `guardrail` command: a thin shell over the library.

    guardrail check "How do I bake bread?"                 # input stage
    guardrail check --prompt "Hi" --response "Hello!"      # output stage
    guardrail check TEXT --policy hate --policy sexual --config guard.toml --json --show-prompt
    guardrail serve --config guard.toml                    # the HTTP service (guardrail[serve])

Exit status: 0 allowed (flags included), 1 blocked or rewritten, 2 bad usage, configuration or
scorer error (a policy with `on_error = "raise"` whose score can't be had). A policy that fails
closed (`on_error = "block"`, the default) blocks: 1, with the error in the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from guardrail._config import Config, load_config, set_threads
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
    check.add_argument("--threads", type=_threads, metavar="N",
                       help="CPU threads for the model (default: [model] threads, $GUARDRAIL_THREADS, or one per core)")
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.add_argument("--show-prompt", action="store_true",
                       help="print the exact prompt sent to the model for each policy")
    _add_tool_parsers(commands)
    _add_serve_parser(commands)
    return parser


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the HTTP service (moderations, checks, LiteLLM guardrail API)")
    serve.add_argument("--config", metavar="FILE", help="a TOML configuration file ([serve] holds the service keys)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--allow-remote", action="store_true", default=None,
                       help="without API keys, answer non-loopback clients too")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def _serve(args: argparse.Namespace, *, scorer: Scorer | None) -> int:
    try:
        from guardrail.serve import serve
    except ImportError as exc:  # the web stack is an extra
        print(f"guardrail: error: {exc.name} is missing; install guardrail[serve]", file=sys.stderr)
        return 2
    try:
        serve(args.config, host=args.host, port=args.port, allow_remote=args.allow_remote, scorer=scorer,
              log_level=args.log_level)
    except GuardrailError as exc:
        print(f"guardrail: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_tool_parsers(commands: argparse._SubParsersAction) -> None:
    """`tune`, `eval` and `calibrate`: classifier work on labeled JSONL (see guardrail._data)."""
    from guardrail._calibrate import GOALS

    tune = commands.add_parser("tune", help="LoRA-tune a causal LM into a policy classifier")
    tune.add_argument("data", nargs="+", help="labeled JSONL files (prompt, response, labels)")
    tune.add_argument("--model", default="embedded", help="base model: a directory, hub id or 'embedded'")
    tune.add_argument("--out", required=True, help="adapter output directory")
    tune.add_argument("--validation", nargs="+", metavar="FILE", help="validation JSONL (default: a split)")
    tune.add_argument("--policy", action="append", default=[], metavar="NAME", help="policies to train (repeatable)")
    tune.add_argument("--config", metavar="FILE", help="take the policies (guidelines) from this configuration")
    tune.add_argument("--threads", type=_threads, metavar="N", help="CPU threads for torch")
    for flag, kind in (("epochs", int), ("learning-rate", float), ("batch-size", int), ("rank", int),
                       ("alpha", int), ("val-fraction", float), ("patience", int), ("seed", int),
                       ("max-length", int), ("weight-decay", float), ("dropout", float)):
        tune.add_argument(f"--{flag}", type=kind)
    tune.add_argument("--target-modules", help="comma-separated, e.g. q_proj,v_proj")
    tune.add_argument("--loss", choices=["answer", "binary"])
    tune.add_argument("--schedule", choices=["constant", "linear"])
    tune.add_argument("--select-by", choices=["roc_auc", "loss"])
    tune.add_argument("--dtype")
    tune.add_argument("--init-adapter", metavar="DIR", help="start from this adapter's weights (same rank and modules)")
    tune.add_argument("--quiet", action="store_true", help="no progress bars")
    tune.add_argument("--resume", action="store_true", help="go on from OUT/checkpoint (same data and options)")
    tune.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                      help="save a resumable checkpoint every STEPS optimizer steps (default 200)")
    tune.add_argument("--max-steps", type=int, metavar="STEPS", help="stop after STEPS steps in all (resume later)")
    tune.add_argument("--max-tokens", type=int, default=4096, metavar="N",
                      help="padded tokens per forward; bounds memory (default 4096)")
    for name, text in (("eval", "measure the configured guard on labeled data"),
                       ("calibrate", "set policy thresholds in the config from labeled data")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("data", nargs="+", help="labeled JSONL files")
        sub.add_argument("--config", metavar="FILE", required=name == "calibrate", help="a TOML configuration file")
        sub.add_argument("--threads", type=_threads, metavar="N", help="CPU threads for the model")
        sub.add_argument("--policy", action="append", default=[], metavar="NAME", help="only these policies")
        sub.add_argument("--limit", type=int, help="only the first N rows")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    commands.choices["eval"].add_argument("--out", default="guardrail-eval", help="report directory")
    commands.choices["eval"].add_argument("--no-plots", action="store_true")
    commands.choices["calibrate"].add_argument("--goal", choices=GOALS, default="f1")
    commands.choices["calibrate"].add_argument("--target", type=float, help="for fpr, precision or recall")
    commands.choices["calibrate"].add_argument("--dry-run", action="store_true", help="print, don't write")


def _threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return int(value)


def _load(args: argparse.Namespace) -> Config:
    """The configuration, with `--threads` over the environment and the file."""
    config = load_config(args.config)
    if getattr(args, "threads", None) is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, threads=args.threads))
    return config


def _run_tool(args: argparse.Namespace, *, scorer: Scorer | None, out: TextIO) -> int:
    from guardrail._data import dataset_hash, load_labeled

    guard = None
    try:
        config = _load(args)
        every_policy = [p.name for p in config.policies]
        if args.policy:
            config = config.select(args.policy)
        if args.command == "tune":
            from guardrail._tune import RunOptions, TuneOptions, tune

            if config.model.threads is not None:
                set_threads(config.model.threads)

            names = ("epochs", "learning_rate", "batch_size", "rank", "alpha", "val_fraction", "patience", "seed",
                     "max_length", "weight_decay", "dropout", "loss", "schedule", "select_by", "dtype", "init_adapter")
            chosen = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
            if args.target_modules:
                chosen["target_modules"] = tuple(args.target_modules.split(","))
            validation = load_labeled(args.validation) if args.validation else None
            result = tune(args.model, load_labeled(args.data), out_dir=args.out, policies=config.policies,
                          options=TuneOptions(**chosen), validation=validation, data=dataset_hash(args.data),
                          progress=not args.quiet,
                          run=RunOptions(checkpoint_every=args.checkpoint_every, resume=args.resume,
                                         max_steps=args.max_steps, max_tokens=args.max_tokens))
            if not result.finished:
                out.write(f"stopped after {result.steps} steps; checkpoint in {result.out_dir / 'checkpoint'} "
                          "(run the same command with --resume to go on)\n")
                return 0
            out.write(f"adapter: {result.out_dir} (epoch {result.best_epoch}, "
                      f"validation ROC-AUC {result.validation.get('roc_auc')})\n")
            return 0
        examples = load_labeled(args.data, limit=args.limit)
        guard = config.build_guard(scorer=scorer)
        if args.command == "eval":
            from guardrail._evaluate import evaluate, write_report

            report = evaluate(guard, examples, progress=not args.quiet)
            path = write_report(report, args.out, plots=not args.no_plots)
            for key, m in report.groups.items():
                out.write(f"{key}: n={m.n} pos={m.positives} ROC-AUC={m.roc_auc} AU-PRC={m.au_prc} "
                          f"best F1={m.best_f1} at {m.best_threshold}; F1={m.f1:.3f}\n")
            out.write(f"report: {path}\n")
            return 0
        from guardrail._calibrate import calibrate, write_thresholds

        calibrations = calibrate(guard, examples, goal=args.goal, target=args.target, progress=not args.quiet)
        for c in calibrations.values():
            out.write(f"{c.policy}: threshold {c.threshold:.4f} (precision {c.precision:.3f}, "
                      f"recall {c.recall:.3f}, f1 {c.f1:.3f})\n")
        if not args.dry_run:
            summary = dataset_hash(args.data)
            write_thresholds(args.config, calibrations, data=summary, all_policies=every_policy)
            out.write(f"wrote thresholds into {args.config}\n")
        return 0
    except (GuardrailError, OSError) as exc:
        return _error(exc)
    finally:
        if guard is not None:
            guard.drain()


def _error(exc: BaseException) -> int:
    print(f"guardrail: error: {exc}", file=sys.stderr)
    return 2


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


def _write_decisions(verdict_dict: dict, out: TextIO) -> None:
    """Print a verdict's decisions as a table: policy, P(Yes), threshold, decision."""
    rows = [("policy", "P(Yes)", "threshold", "decision")]
    for d in verdict_dict["decisions"]:
        decision = d["action"] if d["triggered"] else "allow"
        score = "error" if d["score"] is None else f"{d['score']:.4f}"
        rows.append((d["policy"], score, f"{d['threshold']:.2f}", decision))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    for d in verdict_dict["decisions"]:
        if "error" in d:
            out.write(f"{d['policy']}: no score ({d['error']})\n")
    out.write(f"{verdict_dict['stage']}: {verdict_dict['outcome']}\n")


def main(argv: Sequence[str] | None = None, *, scorer: Scorer | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status. `scorer` replaces the configured one (for tests)."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args, scorer=scorer)
    if args.command != "check":
        return _run_tool(args, scorer=scorer, out=out)
    messages, stage = _messages(args, parser)
    guard = None
    try:
        config = _load(args)
        if args.policy:
            config = config.select(args.policy)
        guard = config.build_guard(scorer=scorer)
        verdict = guard.check(messages, stage)
        requests = guard.requests(messages, stage) if args.show_prompt else []
    except (GuardrailError, OSError) as exc:
        return _error(exc)
    finally:
        if guard is not None:  # a timed-out forward still running at exit would abort the process
            guard.drain()
    result = verdict.to_dict()
    # The model sees one BOS token before each prompt; long content gives one prompt per window.
    prompts = [(r.policy, "<bos>" + r.prompt) for r in requests]
    if args.json:
        if args.show_prompt:
            for decision in result["decisions"]:
                decision["prompts"] = [text for name, text in prompts if name == decision["policy"]]
        out.write(json.dumps(result, indent=2, allow_nan=False) + "\n")
    else:
        if args.show_prompt:
            for name, text in prompts:
                out.write(f"----- prompt for policy {name} ({stage.value}) -----\n{text}")
            out.write("----- end of prompts -----\n")
        _write_decisions(result, out)
    return 0 if verdict.allowed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
