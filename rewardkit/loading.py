"""Loading Hugging Face bases and trained models: the tokenizer (with a pad token for decoders that lack one), the
one-label sequence classifier, and one line instead of transformers' load report."""
from __future__ import annotations

import contextlib
import os
import sys

from rewardkit.errors import UserError
from rewardkit.families import is_decoder_only

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


def _check_dir(name_or_dir: str) -> None:
    if os.path.isdir(name_or_dir) and not os.path.isfile(os.path.join(name_or_dir, "config.json")):
        raise UserError(f"model directory {name_or_dir} has no config.json: point model.name at a directory "
                        "written by save_pretrained (config.json, weights and tokenizer files)")


def _not_loadable(name_or_dir: str, error: OSError) -> UserError:
    return UserError(f"could not load model {name_or_dir!r}: {str(error).splitlines()[0]} -- without network use "
                     "model.name=scratch-tiny (offline) or a local directory with the weights")


def load_config(name_or_dir: str):
    from transformers import AutoConfig

    _check_dir(name_or_dir)
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(name_or_dir)
    except OSError as e:
        raise _not_loadable(name_or_dir, e) from None


def load_tokenizer(name_or_dir: str, config=None):
    """AutoTokenizer of a base or model; a decoder's gets PAD_TOKEN when it has no pad token distinct from EOS,
    so the EOS that ends every input is the token transformers' head pools."""
    from transformers import AutoTokenizer

    _check_dir(name_or_dir)
    config = config or load_config(name_or_dir)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
    except OSError as e:
        raise _not_loadable(name_or_dir, e) from None
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


def load_classifier(name_or_dir: str, tokenizer, report: bool = False):
    """AutoModelForSequenceClassification(num_labels=1) for `tokenizer` (embeddings resized when the tokenizer
    gained a pad token). `report`: say in one line which weights were newly initialised (a reward head on a base
    model, as expected)."""
    from transformers import AutoModelForSequenceClassification

    _check_dir(name_or_dir)
    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1,
                                                                             output_loading_info=True)
    except OSError as e:
        raise _not_loadable(name_or_dir, e) from None
    if model.config.num_labels != 1:
        raise UserError(f"{name_or_dir} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if report and (line := load_report(type(model).__name__, name_or_dir, info)):
        print(line, file=sys.stderr)
    return model


def load_hf_classifier(name_or_dir: str, report: bool = False):
    """The classifier and its tokenizer, with errors that say what to do."""
    tokenizer = load_tokenizer(name_or_dir)
    return load_classifier(name_or_dir, tokenizer, report), tokenizer


def load_report(cls: str, source: str, info: dict) -> str | None:
    """transformers' loading info as one line: which weights were initialised (None when all were loaded)."""
    new = sorted({k if isinstance(k, str) else k[0] for k in (*info["missing_keys"], *info["mismatched_keys"])})
    unused = sorted(info["unexpected_keys"])
    if not new and not unused:
        return None
    line = f"model: {cls} from {source}: newly initialised {', '.join(new) or 'nothing'}"
    if unused:
        line += f"; checkpoint weights not used: {', '.join(unused)}"
    return line + " (a new reward head on a base model is expected)"
