"""autoaccel: tune optimizer accelerations and report, with evidence, which of them help."""

__version__ = "0.1.0"
