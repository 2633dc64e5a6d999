"""Fault injection with seeded rates, and the fault log that says exactly what was injected.

Reading faults change values or times of single readings (or whole counter series); message faults
change how a message is delivered or what its bytes are. Every injected fault is one row of the fault
log (kind, tenant, device, metric, event time, message id, detail) so tests can check that the
pipeline caught exactly those. Rates (``[faults]`` of a scenario, missing kinds are 0):

- per eligible reading: ``gap`` (any), ``stuck`` (gauge / delta, runs of 4), ``spike`` (gauge /
  delta), ``clock_skew`` (any), ``unit_mistake`` (energy registers: the Wh number sent as the unit)
- per counter series (share of device registers that see one): ``register_reset``, ``rollover``
- per message: ``duplicate``, ``out_of_order``, ``late``, ``wrong_tenant``, ``broken_json``,
  ``wrong_type``, ``non_finite``, ``oversized``, ``deep_nesting``

Kinds drawn per reading (or per message) are exclusive: one uniform draw picks at most one kind.
"""

from simulators.faults.log import FAULT_LOG_SCHEMA, empty_log
from simulators.faults.messages import MALFORMED, MESSAGE_KINDS, inject_message_faults
from simulators.faults.readings import READING_KINDS, SERIES_KINDS, inject_reading_faults

FAULT_KINDS = READING_KINDS + SERIES_KINDS + MESSAGE_KINDS

__all__ = [
    "FAULT_KINDS",
    "FAULT_LOG_SCHEMA",
    "MALFORMED",
    "MESSAGE_KINDS",
    "READING_KINDS",
    "SERIES_KINDS",
    "empty_log",
    "inject_message_faults",
    "inject_reading_faults",
]
