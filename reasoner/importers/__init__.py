"""Importers of external files (CMS NCCI tables) into generated knowledge modules."""
