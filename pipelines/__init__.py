"""KFP pipeline definitions, one module per pipeline (the wiring only; the logic lives in components/)."""
