"""mobile_agent: the device side of the live system (issue 3).

    planner  pure core: the agent's view of the sites, Algorithm 1 (N = 1) and Algorithm 2 per task
    meter    pure: measured phases -> energy, response time, availability -> the results record
    daemon   the shell: running applications, SIGTERM, the entry point
    settings AgentSettings (every field a flag and a variable)
    tasks    one task (Algorithm 2); remote: one remote attempt and its result
    events   the event pump (statuses, profiles, predictions, results)
    policy   the retained policy topic; record: the measurements and the results record

Run it with `edgeoff-agent` (or `python -m mobile_agent`); `edgeoff up` runs it with the whole system.
"""
