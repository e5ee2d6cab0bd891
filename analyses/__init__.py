"""Case studies of the Pythia paper, each a module of functions returning tidy DataFrames."""
