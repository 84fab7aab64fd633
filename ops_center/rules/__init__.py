"""Rule and pattern files (YAML, edited by city staff) and their loader."""
