"""The base's config and tokenizer, before any weights: hub ids and local `save_pretrained` directories, a pad
token for decoders that lack one, and transformers' own logging kept quiet (one summary line replaces it)."""
from __future__ import annotations

import contextlib
import os

from rewardkit.encoding.families import is_decoder_only
from rewardkit.errors import UserError

PAD_TOKEN = "<|pad|>"  # added to a decoder's tokenizer that has no pad token of its own (or only EOS as pad)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' progress bars and load report off: our own bars and one summary line replace them."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def check_base_dir(name_or_dir: str) -> None:
    if os.path.isdir(name_or_dir) and not os.path.isfile(os.path.join(name_or_dir, "config.json")):
        raise UserError(f"model directory {name_or_dir} has no config.json: point model.name at a directory "
                        "written by save_pretrained (config.json, weights and tokenizer files)")


def not_loadable(name_or_dir: str, error: OSError) -> UserError:
    return UserError(f"could not load model {name_or_dir!r}: {str(error).splitlines()[0]} -- without network use "
                     "model.name=scratch-tiny (offline) or a local directory with the weights")


def load_config(name_or_dir: str):
    from transformers import AutoConfig

    check_base_dir(name_or_dir)
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(name_or_dir)
    except OSError as e:
        raise not_loadable(name_or_dir, e) from None


def load_tokenizer(name_or_dir: str, config=None):
    """AutoTokenizer of a base or model; a decoder's gets PAD_TOKEN when it has no pad token distinct from EOS,
    so the EOS that ends every input is the token transformers' head pools."""
    from transformers import AutoTokenizer

    check_base_dir(name_or_dir)
    config = config or load_config(name_or_dir)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
    except OSError as e:
        raise not_loadable(name_or_dir, e) from None
    if is_decoder_only(config) and (tokenizer.pad_token_id is None or
                                    tokenizer.pad_token_id == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if tokenizer.pad_token_id is None:
        raise UserError(f"tokenizer of {name_or_dir} has no pad token; set one in its tokenizer_config.json")
    return tokenizer


def load_saved_tokenizer(directory: str):
    """A tokenizer the tokenize stage saved (its pad token already set)."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as e:
        raise UserError(f"could not load the tokenizer in {directory} ({str(e).splitlines()[0]}); rebuild it with "
                        "`dvc repro tokenize`") from None
