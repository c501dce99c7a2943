"""The pipeline's core: errors, artifacts, stages, recipes, safe file writes."""
