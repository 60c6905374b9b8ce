"""The `edgeoff` command and what orchestrates the daemons: the top of the dependency arrows.

    edgeoff (core, wire contract, operations)  <-  site_daemon, prediction_worker, mobile_agent  <-  launcher

- `cli`: the `edgeoff` umbrella command; each subcommand's module is imported only when it runs.
- `up`: `edgeoff up`, the whole live system on one machine (brokers, sites, worker, agent); a package, one
  concern per module (see its docstring).
- `brokers`: the project's Mosquitto and Redis configuration rendered into a work folder, and secrets.
- `reference`: docs/configuration.md generated from every daemon's settings model.

Nothing in `edgeoff/` imports this package or a daemon; this package may import both.
"""
