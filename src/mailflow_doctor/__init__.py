"""mailflow-doctor: why mail from Exchange Online to on-premises Exchange is delayed or lost."""

__version__ = "0.1.0"
