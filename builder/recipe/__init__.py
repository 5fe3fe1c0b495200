"""The recipe language: parsing definition files exactly as Apptainer does, losslessly.

Entry points:
    load_recipe(path, build_args)  -> Recipe   read a file, split stages, template, parse
    parse_recipe(data, path=..., build_args=...) -> Recipe
    parse_definition(text, path=..., first_line=...) -> Stage   one stage, untemplated
    BuildArgs, read_build_args                      --build-arg / --build-arg-file
    to_apptainer_json(stage, full_raw)              the schema of Apptainer's parsed definition
"""

from builder.recipe.args import BuildArgs, read_build_args
from builder.recipe.gojson import to_apptainer_json
from builder.recipe.load import load_recipe, parse_recipe, split_chunks
from builder.recipe.model import (
    APP_SECTIONS,
    HEADER_KEYS,
    STANDARD_SECTIONS,
    Chunk,
    FilesBlock,
    FileTransfer,
    HeaderEntry,
    Recipe,
    Script,
    Section,
    Stage,
)
from builder.recipe.parser import EmptyStage, parse_definition

__all__ = [
    "APP_SECTIONS", "HEADER_KEYS", "STANDARD_SECTIONS",
    "BuildArgs", "Chunk", "EmptyStage", "FileTransfer", "FilesBlock", "HeaderEntry", "Recipe",
    "Script", "Section", "Stage",
    "load_recipe", "parse_definition", "parse_recipe", "read_build_args",
    "split_chunks", "to_apptainer_json",
]
