"""Built-in heads: classification, multi-label and regression MLPs."""
