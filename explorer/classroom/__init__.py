"""The Class page: the room's runs pooled into Fig. 6, the cells the teacher hands out, the teacher's panel."""
