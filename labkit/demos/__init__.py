"""What the notebooks call to show a pattern: demo payloads, kept apart from infrastructure."""
