"""minigen."""
