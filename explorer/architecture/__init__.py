"""The Architecture and Compare pages (and the home page's block figure): net summaries, diagrams, layer tables."""
