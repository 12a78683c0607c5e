# The chat example's Django project (the Channels tutorial, served by laurelin).
