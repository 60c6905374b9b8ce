"""`edgeoff up`: the whole live system on one machine, with progress, a results table and results.json.

    brokers (reuse, or start Mosquitto and Redis on free ports) -> one site daemon per site of the dataset
    (failure injection on) -> a prediction worker -> one mobile agent -> progress until the agent is done
    -> results table and DIR/results.json -> every process stopped

One concern per module:

- `arguments`: the command line (`add_parser`).
- `children`: process supervision (`Children`: own process groups, SIGTERM then SIGKILL, death with the
  parent); the benchmarks start their daemons with it too.
- `broker_setup`: reuse the brokers that answer, or start the project's own (accounts, ACL, passwords).
- `progress`: the live progress line, from the agent's retained policy topic and the sites' statuses.
- `report`: the failures the sites injected, the results table and the results.json body.
- `command`: `run`, which ties them together.
"""
