"""The one exception tree of edgeoff.

    EdgeoffError
    ├── ScenarioError      a scenario file or model is invalid (file, field, reason)
    ├── TraceError         the LANL failure data is unreadable, malformed, or names an unknown node
    ├── PredictionError    an availability predictor cannot be fitted or used
    ├── DecisionError      the decision engine cannot decide (e.g. no feasible site)
    ├── EvaluationError    the offline evaluation was asked for something that does not exist
    └── OutputError        an output path (--out) cannot be written: checked before any long work

Commands turn any EdgeoffError into a one-line message and exit code 2.
"""


class EdgeoffError(Exception):
    """Base of every error edgeoff raises on purpose."""


class ScenarioError(EdgeoffError):
    """A scenario file or model is invalid."""


class TraceError(EdgeoffError):
    """The LANL failure data is unreadable or malformed, or a node does not exist."""


class PredictionError(EdgeoffError):
    """An availability predictor cannot be fitted or used."""


class DecisionError(EdgeoffError):
    """The decision engine cannot decide."""


class NoFeasibleSolutionError(DecisionError):
    """Every action of the current state failed (Algorithm 2, Q is empty)."""


class EvaluationError(EdgeoffError):
    """The offline evaluation was asked for something that does not exist."""


class OutputError(EdgeoffError):
    """An output path cannot be written (it is a file, lies under a file, or its folder is read-only)."""
