"""Read exports through LLaMA-Factory's own dataset loader; run by tests/test_ecosystem.py in LLaMA-Factory's venv.

    python tests/llamafactory_check.py DATASET_DIR TOKENIZER NAME [NAME ...]

LLaMA-Factory pins its own datasets, transformers and TRL, so it lives in a
virtual environment of its own (``CURATOR_LLAMAFACTORY_PYTHON``), and this
script is its side of the check: for each dataset entry it prints one JSON
line with the rows as LLaMA-Factory aligns them (``_prompt``,
``_response``, ``_system``) and how many examples its supervised
preprocessing keeps with the ``default`` template and TOKENIZER. It imports
nothing of curator. LLaMA-Factory 0.9.5 imports torchaudio at import time for
audio inputs; where no torchaudio build matches the installed torch, an
empty module stands in for it (text rows never reach it).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import tempfile
import types


def main(dataset_dir: str, tokenizer_path: str, names: list[str]) -> None:
    if importlib.util.find_spec("torchaudio") is None:
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    from llamafactory.data.loader import _get_merged_dataset, get_dataset
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import AutoTokenizer, Seq2SeqTrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    with tempfile.TemporaryDirectory() as scratch:
        training = Seq2SeqTrainingArguments(output_dir=scratch, report_to=[])
        model = ModelArguments(model_name_or_path=tokenizer_path)
        for name in names:
            data = DataArguments(dataset=[name], dataset_dir=dataset_dir, template="default", cutoff_len=512,
                                 preprocessing_num_workers=None, overwrite_cache=True)
            aligned = _get_merged_dataset([name], model, data, training, stage="sft", return_dict=True)[name]
            template = get_template_and_fix_tokenizer(tokenizer, data)
            module = get_dataset(template, model, data, training, stage="sft", tokenizer=tokenizer)
            rows = [{key: row[key] for key in ("_prompt", "_response", "_system")} for row in aligned]
            print(json.dumps({"name": name, "rows": rows, "tokenized": len(module["train_dataset"])}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
