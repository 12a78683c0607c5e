# The chat example's own Django tests (run through tests/ by pytest; see there).
