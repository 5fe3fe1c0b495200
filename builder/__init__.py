"""sbuild's builder: the command line, the recipe model, sources, build steps and image formats.

Import what you need from the submodules (``builder.recipe``, ``builder.images``); this
package imports nothing heavy by itself so that ``sbuild`` starts quickly.
"""

__all__: list[str] = []
