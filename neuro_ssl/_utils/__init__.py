"""Private helpers shared by every stage."""
