"""The orchestrator: plans tasks and hands them from specialist to specialist.

``swarm orchestrator`` runs :func:`run_orchestrator`. The parts:

* :mod:`orchestrator.planner`: which specialists a goal needs (:class:`ModelPlanner`, falling
  back to :class:`RulePlanner`);
* :mod:`swarm.handoff` (in the kernel, as the API checks inputs with it too): each
  specialist's input, built from the task input and earlier outputs, and checked against its
  input schema;
* :mod:`orchestrator.runner`: the :class:`Orchestrator` that consumes submissions and results,
  dispatches ready steps, and enforces deadlines and cancellation.
"""

from orchestrator.planner import ChatModel, ModelPlanner, Planner, RulePlanner, chain
from orchestrator.runner import Orchestrator, run_orchestrator
from swarm.handoff import build_input, input_problem, missing_input_fields

__all__ = [
    "ChatModel",
    "ModelPlanner",
    "Orchestrator",
    "Planner",
    "RulePlanner",
    "build_input",
    "chain",
    "input_problem",
    "missing_input_fields",
    "run_orchestrator",
]
