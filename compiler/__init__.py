"""Compiler: preference grid -> deduplicated trees -> BN-folded graphs -> engines."""

from compiler.errors import CompilerError
from compiler.grid import GridPoint, load_grid, parse_grid, simplex_lattice

__all__ = ["CompilerError", "GridPoint", "load_grid", "parse_grid", "simplex_lattice"]
