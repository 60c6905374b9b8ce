"""edgeoff: proactive, fault-tolerant edge offloading.

The pure core (scenario, cost model, LANL traces, availability predictor, MDP solver,
decision engines) lives in this package; the daemons and the offline evaluation call it.
"""

__version__ = "0.1.0"
