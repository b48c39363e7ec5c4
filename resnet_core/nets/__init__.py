"""The networks: the spec table (`specs`), the blocks and the model built from a spec, its layer and stage tables
(`summary`), and what the paper reports about each (`paper`)."""
