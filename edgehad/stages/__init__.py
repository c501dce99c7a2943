"""Pipeline stages, one per file; registered with ``@edgehad.core.stage.register``."""
