"""Commands that read any kind of model file: inspect, summary, samples, and opening a model
of any format for evaluation (torch only when a torch file is opened)."""
