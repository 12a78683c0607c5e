# Django management commands of the laurelin app (found by Django, not imported by laurelin).
