"""read_json_object: the JSON object of a file, or a ConfigError naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgen.config.errors import ConfigError
from vidgen.config.files import read_json_object


def test_reads_an_object(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_text('{"in_channels": 4, "block_out_channels": [32, 64]}')
    assert read_json_object(file, "model.pretrained_path") == {
        "in_channels": 4,
        "block_out_channels": [32, 64],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "cannot read"), ("{not json", "cannot read"), ("[1, 2]", "its JSON is a list, not an object")],
)
def test_bad_files_name_the_key_and_the_file(tmp_path: Path, text: str | None, message: str) -> None:
    file = tmp_path / "config.json"
    if text is not None:
        file.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        read_json_object(file, "model.pretrained_path", "a diffusers model config")
    assert error.value.key == "model.pretrained_path"
    assert str(file) in str(error.value) and "a diffusers model config" in str(error.value)
