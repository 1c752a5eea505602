"""Verdicts as LangChain custom events, for callback handlers and `astream_events`."""

from __future__ import annotations

from collections.abc import Callable

from guardrail import ConfigError, Verdict, audit_record

__all__ = ["langchain_events"]


def langchain_events(
    *, name: str = "guardrail_verdict", include_content: bool = False, key: bytes | None = None
) -> Callable[[Verdict], None]:
    """An observer that sends each verdict to the current LangChain run as a custom event.

    >>> guard = Guard(observers=[langchain_events()])                         # doctest: +SKIP
    >>> async for event in guard_runnable(chain, guard).astream_events(question):  # doctest: +SKIP
    ...     if event["event"] == "on_custom_event" and event["name"] == "guardrail_verdict":
    ...         print(event["data"]["outcome"])

    The event's data is `audit_record(verdict)`: JSON-safe, content only when configured.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    from langchain_core.callbacks.manager import dispatch_custom_event
    from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config

    def observe(verdict: Verdict) -> None:
        config = ensure_config()
        if get_callback_manager_for_config(config).parent_run_id is None:
            return  # not inside a LangChain run: no one to tell
        data = audit_record(verdict, include_content=include_content, key=key)
        dispatch_custom_event(name, data, config=config)

    return observe
