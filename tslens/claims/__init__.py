"""Claims from the paper, its rebuttal and the follow-up literature, as a registry of checks
(``tslens/data/claims.toml``) that ``tslens reproduce`` runs on any model: the registry and its
rule language (:mod:`tslens.claims.registry`), the shared measurements
(:mod:`tslens.claims.measure`) and the runner (:mod:`tslens.claims.reproduce`)."""
