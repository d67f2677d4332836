"""Reading data files (face sets, image lists) safely."""
