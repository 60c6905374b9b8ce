"""mobile_agent: the device side of the live system (issue 3).

    planner  pure core: the agent's view of the sites, Algorithm 1 (N = 1) and Algorithm 2 per task
    meter    pure: measured phases -> energy, response time, availability -> the results record
    daemon   the shell: settings, MQTT, running applications, the retained policy topic, SIGTERM

Run it with `edgeoff-agent` (or `python -m mobile_agent`); `edgeoff up` runs it with the whole system.
"""
