import pytest

from gpt2_lora.errors import UserError
from gpt2_lora.tokenizer import EOS_ID, Tokenizer


def test_special_ids(tokenizer):
    assert tokenizer.encode("<|endoftext|>") == [EOS_ID] == [50256]
    assert tokenizer.encode("\n\n") == [628]
    assert tokenizer.encode_ordinary(" Hello world") == [18435, 995]


def test_round_trip_every_e2e_valid_line(tokenizer, shared_data):
    lines = (shared_data / "e2e" / "valid.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4672
    ids = tokenizer.encode_batch(lines)
    for line, line_ids in zip(lines, ids):
        assert tokenizer.decode(line_ids) == line


def test_missing_vocab_file_is_one_line_error(tmp_path):
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(UserError, match="missing vocab.bpe"):
        Tokenizer(tmp_path)


def test_wrong_vocab_files_are_rejected(tmp_path):
    (tmp_path / "encoder.json").write_text("{}")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(UserError, match="not the official GPT-2 BPE"):
        Tokenizer(tmp_path)
