"""The floor under the stages: what every stage may know about graphs. Placeholder names
(`naming`), node walks and subgraph copies (`nodes`, `fx_args`), per-op facts and costs
(`ops`), and memory accounting (`memory`). It imports no stage."""
