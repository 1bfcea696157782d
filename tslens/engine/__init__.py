"""The exact primitives every analysis runs on (see ``docs/architecture.md`` when written):
:mod:`tslens.engine.continuation` is the one way tslens runs a prompt once and continues its
KV cache."""
