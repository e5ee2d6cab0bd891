"""The demo's report sections, one module per case study, each `section(ctx) -> Section | None`.

Registered in `pythia_suite.registry.DEMO_SECTIONS` and called in that order by
`pythia_suite.demo`, which only orchestrates. A section composes its case study's functions (and
the library's) on the demo's suite and turns the measured numbers into the report's sentences.
"""
