"""The lark grammar of definition files, shipped as package data."""

from importlib.resources import files

__all__ = ["grammar_text"]


def grammar_text(name: str = "recipe.lark") -> str:
    """The text of one grammar file in this package."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
