"""An OpenFeature provider backed by an entitle engine (``pip install "entitle[openfeature]"``).

::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from entitle import Engine
    from entitle.openfeature import EntitleProvider

    api.set_provider_and_wait(EntitleProvider(Engine.connect("http://127.0.0.1:8787")))
    client = api.get_client()
    ctx = EvaluationContext(targeting_key="cus_pro_bob")      # the customer id
    client.get_boolean_value("sso", False, ctx)                # a flag (or a limit > 0)
    client.get_integer_value("projects", 0, ctx)               # a limit
    client.get_float_value("projects", 0.0, ctx)               # a limit; unlimited is inf

The targeting key is the customer id. Features are flags and limits:

- boolean evaluations answer :meth:`Engine.enabled` (a flag's value; a limit that is unlimited or
  above 0);
- integer evaluations answer a limit; an **unlimited** limit is ``2**63 - 1`` (``INT64_MAX``,
  compares above every real usage) with variant ``"unlimited"`` and ``flag_metadata["unlimited"]``
  true; float evaluations answer ``math.inf`` for it;
- a flag evaluated as a number, or any feature as a string or object, is a ``TYPE_MISMATCH``
  error (the caller's default is returned).

Reasons: ``override`` and ``subscription`` are ``TARGETING_MATCH``; ``default`` and
``customer_not_found`` are ``DEFAULT``; a feature the data does not have is a ``FLAG_NOT_FOUND``
error. ``flag_metadata`` carries entitle's own ``reason`` and the content ``version``.

``initialize`` waits up to ``ready_timeout`` seconds for the engine's data and fails (the provider
is then in error) when none came; the provider becomes ready by itself when data arrives later.
The provider emits ``PROVIDER_CONFIGURATION_CHANGED`` when the content changes,
``PROVIDER_STALE`` when the data has not been confirmed by the edge for ``max_staleness``, and
``PROVIDER_READY`` when it recovers.
"""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Sequence, Union

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    FlagNotFoundError,
    ProviderNotReadyError,
    TargetingKeyMissingError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from . import DEFAULT_WAIT_READY_TIMEOUT, UNLIMITED, Decision, Engine, Event, EventKind
from . import Reason as EntitleReason

__all__ = ["INTEGER_UNLIMITED", "EntitleProvider"]

INTEGER_UNLIMITED = 2**63 - 1
"""The integer an unlimited limit evaluates to (``INT64_MAX``)."""

_REASONS = {
    EntitleReason.OVERRIDE: Reason.TARGETING_MATCH,
    EntitleReason.SUBSCRIPTION: Reason.TARGETING_MATCH,
    EntitleReason.DEFAULT: Reason.DEFAULT,
    EntitleReason.CUSTOMER_NOT_FOUND: Reason.DEFAULT,
}


class EntitleProvider(AbstractProvider):
    """An OpenFeature provider answering from ``engine``.

    Args:
        engine: the engine to ask (from :meth:`Engine.connect`, :meth:`Engine.from_file`...).
        ready_timeout: seconds ``initialize`` waits for the engine's data.
        close_engine: close the engine when the provider shuts down.
    """

    def __init__(self, engine: Engine, *,
                 ready_timeout: Optional[float] = DEFAULT_WAIT_READY_TIMEOUT,
                 close_engine: bool = False) -> None:
        super().__init__()
        self.engine = engine
        self.ready_timeout = ready_timeout
        self.close_engine = close_engine
        self._ready = False
        self._listening = False

    def get_metadata(self) -> Metadata:
        return Metadata(name="entitle")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if not self._listening:
            self.engine.on_event(self._on_event)
            self._listening = True
        if not self.engine.wait_ready(self.ready_timeout):
            raise ProviderNotReadyError(
                f"no entitlement data after {self.ready_timeout} s: "
                f"{self.engine.status.last_error}")
        self._ready = True

    def shutdown(self) -> None:
        if self._listening:
            self.engine.remove_listener(self._on_event)
            self._listening = False
        if self.close_engine:
            self.engine.close()

    def _on_event(self, event: Event) -> None:
        details = ProviderEventDetails(message=event.message, metadata={
            "seq": event.seq, "old_version": event.old_version,
            "new_version": event.new_version})
        if event.kind is EventKind.VERSION_CHANGED:
            if not self._ready:
                self._ready = True
                self.emit_provider_ready(details)
            self.emit_provider_configuration_changed(details)
        elif event.kind is EventKind.STALE:
            self.emit_provider_stale(details)
        elif event.kind is EventKind.SYNC_RECOVERED and self._ready:
            self.emit_provider_ready(details)

    # Evaluation

    def _decide(self, flag_key: str,
                evaluation_context: Optional[EvaluationContext]) -> Decision:
        customer = None if evaluation_context is None else evaluation_context.targeting_key
        if not customer:
            raise TargetingKeyMissingError("entitle needs the customer id as the targeting key")
        decision = self.engine.check(customer, flag_key)
        if decision.feature_type is None:
            raise FlagNotFoundError(f"no feature {flag_key!r} in the entitlement data "
                                    f"(version {decision.version})")
        return decision

    @staticmethod
    def _details(value: Any, decision: Decision,
                 variant: Optional[str] = None) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(
            value=value,
            reason=_REASONS.get(decision.reason, Reason.UNKNOWN),
            variant=variant,
            flag_metadata={"reason": decision.reason.value, "version": decision.version,
                           "unlimited": decision.unlimited},
        )

    def _limit(self, flag_key: str, kind: str,
               evaluation_context: Optional[EvaluationContext]) -> Decision:
        decision = self._decide(flag_key, evaluation_context)
        if decision.limit is None:
            raise TypeMismatchError(f"{flag_key!r} is a flag, not a limit: evaluate it as a "
                                    f"boolean, not as {kind}")
        return decision

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool,
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[bool]:
        decision = self._decide(flag_key, evaluation_context)
        return self._details(decision.enabled, decision)

    def resolve_integer_details(
        self, flag_key: str, default_value: int,
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[int]:
        decision = self._limit(flag_key, "an integer", evaluation_context)
        if decision.limit is UNLIMITED:
            return self._details(INTEGER_UNLIMITED, decision, "unlimited")
        return self._details(decision.limit, decision)

    def resolve_float_details(
        self, flag_key: str, default_value: float,
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[float]:
        decision = self._limit(flag_key, "a float", evaluation_context)
        if decision.limit is UNLIMITED:
            return self._details(math.inf, decision, "unlimited")
        return self._details(float(decision.limit), decision)  # type: ignore[arg-type]

    def resolve_string_details(
        self, flag_key: str, default_value: str,
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[str]:
        self._decide(flag_key, evaluation_context)
        raise TypeMismatchError(f"{flag_key!r} is a flag or a limit, never a string")

    def resolve_object_details(
        self, flag_key: str,
        default_value: Union[Sequence[FlagValueType], Mapping[str, FlagValueType]],
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[Union[Sequence[FlagValueType], Mapping[str, FlagValueType]]]:
        self._decide(flag_key, evaluation_context)
        raise TypeMismatchError(f"{flag_key!r} is a flag or a limit, never an object")

    def get_provider_hooks(self) -> List[Any]:
        return []
