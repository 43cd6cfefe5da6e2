"""Help for people writing rules: `examples` (golden tests inside rules.yaml), `lint` (likely
mistakes, one module per concern) and `explain` (why each rule did or did not answer)."""
