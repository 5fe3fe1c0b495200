"""Apptainer's parser quirks, kept; its crashes and silent traps, made into clear messages."""

from __future__ import annotations

import pytest

from base.errors import RecipeError
from builder.recipe import parse_recipe


def parse(text: str | bytes, **kw):
    data = text.encode() if isinstance(text, str) else text
    return parse_recipe(data, path="r.def", **kw)


def rejected(text: str | bytes):
    with pytest.raises(RecipeError) as info:
        parse(text)
    return info.value.diagnostics


def warnings_of(text: str) -> list[str]:
    return [w.message for w in parse(text).warnings]


# --- header -------------------------------------------------------------------------------

def test_header_keys_are_case_insensitive_and_values_keep_case():
    stage = parse("BootStrap: docker\nFROM: Debian:12\n%post\ntrue\n").final
    assert stage.header == {"bootstrap": "docker", "from": "Debian:12"}


def test_hash_cuts_a_header_value_and_warns_when_glued():
    recipe = parse("Bootstrap: docker\nFrom: repo#tag\n%post\ntrue\n")
    assert recipe.final.header["from"] == "repo"
    (warning,) = recipe.warnings
    assert (warning.line, warning.column) == (2, 11) and "'#tag' is ignored" in warning.message


def test_a_spaced_comment_after_a_value_is_no_trap():
    assert warnings_of("Bootstrap: docker\nFrom: debian:12 # the base\n%post\ntrue\n") == []


def test_continuation_joins_without_separator_and_turns_backslash_n_into_newline():
    stage = parse("Bootstrap: zypper\nInclude: vim \\\n  git\nProductPGP: a\\n\\\nb\n%post\ntrue\n").final
    assert stage.header["include"] == "vim git"
    assert stage.header["productpgp"] == "a\nb"


def test_blank_line_inside_a_continuation_is_an_error_not_a_crash():
    (d,) = rejected("Bootstrap: docker\nFrom: a\\\n\n  b\n%post\ntrue\n")
    assert (d.line, d.column) == (3, 1)
    assert "continued value of header key 'from'" in d.message and "line 2" in d.hint


def test_continuation_of_a_bare_backslash_still_poisons_later_blank_lines():
    """Go keeps the continued key when the value is only '\\'; a later blank line panics."""
    (d,) = rejected("Bootstrap: docker\nInclude: \\\nFrom: x\n# later comment\n%post\ntrue\n")
    assert d.line == 4


def test_unknown_header_key_suggests_the_closest():
    (d,) = rejected("Bootstap: docker\nFrom: x\n%post\ntrue\n")
    assert (d.line, d.column, d.hint) == (1, 1, "did you mean Bootstrap:?")
    assert "'bootstap'" in d.message


def test_numbered_otherurl_keys_are_valid():
    assert parse("Bootstrap: zypper\nOtherURL12: http://x\n%post\ntrue\n").final.header["otherurl12"]


def test_header_line_without_colon_is_located():
    (d,) = rejected("Bootstrap: docker\n  From debian\n%post\ntrue\n")
    assert (d.line, d.column) == (2, 3)
    assert d.hint == "write 'From: debian'"


def test_byte_order_mark_is_rejected_with_the_reason():
    (d,) = rejected(b"\xef\xbb\xbfBootstrap: docker\nFrom: x\n%post\ntrue\n")
    assert "byte-order mark" in d.hint


def test_duplicate_header_key_warns_and_the_last_wins():
    recipe = parse("Bootstrap: docker\nFrom: a\nFrom: b\n%post\ntrue\n")
    assert recipe.final.header["from"] == "b"
    assert "given again" in recipe.warnings[0].message


def test_shell_variable_in_header_suggests_build_argument_syntax():
    recipe = parse("Bootstrap: docker\nFrom: debian:${VER}\n%arguments\nVER=12\n%post\ntrue\n")
    assert recipe.warnings[0].hint == "headers do not expand shell variables: did you mean {{ VER }}?"


# --- sections -----------------------------------------------------------------------------

def test_misspelt_section_is_located_with_a_suggestion():
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%post\ntrue\n%enviroment\nexport A=1\n")
    assert (d.line, d.column) == (5, 1)
    assert d.hint == "did you mean %environment?"


def test_every_invalid_section_is_reported():
    diags = rejected("Bootstrap: docker\nFrom: x\n%labels:\na b\n%file\na b\n")
    assert [d.line for d in diags] == [3, 5]
    assert [d.hint for d in diags] == ["drop the colon: %labels", "did you mean %files?"]


def test_percent_line_inside_post_opens_a_bogus_section():
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%post\n  %{__python} setup.py\n")
    assert (d.line, d.column) == (4, 3)
    assert "indented section line" in d.message and "quote" in d.hint


def test_tab_after_section_name_is_explained():
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%post\t-c /bin/bash\ntrue\n")
    assert "not a tab" in d.hint


def test_section_names_are_case_insensitive_but_app_sections_are_not():
    assert parse("Bootstrap: docker\nFrom: x\n%POST\ntrue\n").final.scripts["post"].script == "true\n"
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%AppRun foo\necho\n")
    assert d.hint == "app section names must be lower case: %apprun"


def test_appsetup_does_not_exist():
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%appsetup foo\necho\n")
    assert "%appinstall" in d.hint


def test_app_section_without_app_name():
    (d,) = rejected("Bootstrap: docker\nFrom: x\n%apprun\necho\n")
    assert d.line == 3 and "no app name" in d.message


def test_repeated_sections_concatenate_and_later_args_win():
    stage = parse("Bootstrap: docker\nFrom: x\n%post -c /bin/sh\na\n%post\nb\n%post -c /bin/bash -e\nc\n").final
    assert stage.scripts["post"].script == "a\nb\nc\n"
    assert stage.scripts["post"].args == "-c /bin/bash -e"


def test_post_dash_c_without_e_warns():
    recipe = parse("Bootstrap: docker\nFrom: x\n%post -c /bin/bash\nfalse\ntrue\n")
    (w,) = recipe.warnings
    assert w.line == 3 and "without -e" in w.message and w.hint.startswith("write %post -c /bin/bash -e")
    assert warnings_of("Bootstrap: docker\nFrom: x\n%post -c /bin/bash -eu\ntrue\n") == []


def test_headerless_file_first_section_is_trimmed():
    recipe = parse("  %help\nHello\n\n%runscript\necho hi\n")
    stage = recipe.final
    assert stage.header is None
    assert stage.scripts["help"].script == "Hello"
    assert stage.scripts["runscript"].script == "echo hi\n"
    assert "indented section line" in recipe.warnings[0].message
    # after a blank first line the indented line is no longer the (trimmed) first token
    assert "indented section line" in rejected("\n  %help\nHello\n")[0].message


def test_headerless_file_starting_with_empty_section_is_rejected():
    (d,) = rejected("%runscript\n\n%post\ntrue\n")
    assert d.line == 1 and "empty" in d.message


def test_crlf_line_endings_drop_one_carriage_return():
    stage = parse(b"Bootstrap: docker\r\nFrom: x\r\n%post\r\necho a\r\r\n").final
    assert stage.scripts["post"].script == "echo a\r\n"


def test_empty_and_comment_only_files_are_rejected():
    assert "empty" in rejected(b"")[0].message
    assert "no header and no section" in rejected("# just a comment\n\n")[0].message


def test_section_over_64_kib_is_rejected_as_apptainer_does():
    body = ("echo " + "x" * 70 + "\n") * 1000
    (d,) = rejected(f"Bootstrap: docker\nFrom: x\n%post\n{body}%runscript\necho\n")
    assert d.line == 3 and "64 KiB" in d.message
    parse(f"Bootstrap: docker\nFrom: x\n%post\n{body[:60000]}%runscript\necho\n")


# --- %files and %labels ---------------------------------------------------------------------

def test_files_quotes_globs_and_stage_copies():
    stage = parse(
        'Bootstrap: docker\nFrom: x\n%files\n  "a b" "/c d"\n  *.txt /data/\n  only\n'
        "%files from build\n  /out /bin/out\n"
    ).final
    (host, from_stage) = stage.files
    assert [(f.source, f.destination, f.line) for f in host.files] == [
        ("a b", "/c d", 4), ("*.txt", "/data/", 5), ("only", "", 6)]
    assert from_stage.args == "from build" and from_stage.files[0].source == "/out"


def test_files_traps_warn():
    messages = warnings_of("Bootstrap: docker\nFrom: x\n%files\n a # note\n 'x y' z\n%files a b c\n p q\n")
    assert any("taken as the destination" in m for m in messages)
    assert any("single quotes" in m for m in messages)
    assert any("ignored by Apptainer" in m for m in messages)


def test_files_line_with_only_a_quote_is_an_error_not_a_crash():
    (d,) = rejected('Bootstrap: docker\nFrom: x\n%files\n  "\n')
    assert d.line == 4 and "names no file" in d.message


def test_labels_split_on_first_space_and_keep_quotes():
    stage = parse('Bootstrap: docker\nFrom: x\n%labels\n  A "b c" # d\n  K\tV\n  Solo\n').final
    assert stage.labels == {"A": '"b c" # d', "K\tV": "", "Solo": ""}


# --- stages ---------------------------------------------------------------------------------

def test_stages_split_on_bootstrap_lines_and_text_before_is_dropped_from_the_stored_recipe():
    text = "# comment\nBootstrap: docker\nFrom: a\nStage: one\n%post\ntrue\nbootstrap: docker\nFrom: b\n"
    recipe = parse(text)
    assert [s.name for s in recipe.stages] == ["one", ""]
    assert [s.first_line for s in recipe.stages] == [2, 7]
    assert recipe.full_raw == text.split("\n", 1)[1].encode()


def test_round_trip_gives_the_same_bytes():
    data = b"# pre\r\nBootstrap: docker\nFrom: a\n%post\n\xff\xfe bytes\n  %files\n"
    with pytest.raises(RecipeError):
        parse(data)
    data = b"# pre\r\nBootstrap: docker\nFrom: a\n%post\n\xff\xfe bytes\nBootstrap: scratch\n%files\nno-newline"
    assert parse(data).to_bytes() == data


def test_binary_file_is_rejected_with_a_hint():
    (d,) = rejected(bytes(range(256)) * 4)
    assert "binary file" in d.hint
