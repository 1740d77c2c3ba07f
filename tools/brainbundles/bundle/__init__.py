"""Bundle checks, export, packaging and download."""
