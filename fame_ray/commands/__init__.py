"""One module per CLI command; options are `Annotated` with help text."""
