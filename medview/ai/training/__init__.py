"""Reproducible training of the bundled imaging models (``medview train classifier|autoencoder``).

* data: PneumoniaMNIST (MedMNIST v2) ``train`` split to fit, official ``val`` split
  for model selection, temperature scaling and thresholds. The official test split is
  not used (it is not in ``../shared``).
* fixed seeds, deterministic torch algorithms, a fixed thread count
  (``MEDVIEW_TRAIN_THREADS``, default 2), CPU by default.
* every image goes through :func:`medview.ai.preprocess.prepare_batch`, the same
  function inference uses.
* output: ``models/<name>/model.safetensors`` + ``metadata.json`` (the model card in
  the schema of :mod:`medview.modelcards`, with val metrics and the weights' sha256)
  + ``README.md``.

Modules, one job each: :mod:`.data` (data set, augmentation, torch set-up),
:mod:`.classifier`, :mod:`.autoencoder`, :mod:`.card` (card texts, retrained
versions, writing) and :mod:`.card_readme` (the card's README). The command line
lives in :mod:`medview.commands.train`. Torch is imported inside the functions.
"""

from __future__ import annotations

from medview.ai.training.autoencoder import (
    AE_ARCH,
    SCORE_METHODS,
    ae_outputs,
    fit_latent_gaussian,
    train_autoencoder,
)
from medview.ai.training.card import (
    AUTOENCODER_NAME,
    CLASSIFIER_NAME,
    VERSION,
    reference_card,
    version_retrained,
)
from medview.ai.training.card_readme import write_card_readme
from medview.ai.training.classifier import CLASSIFIER_ARCH, finish_classifier, train_classifier
from medview.ai.training.data import augment, default_data_path, load_split

__all__ = [
    "AE_ARCH",
    "AUTOENCODER_NAME",
    "CLASSIFIER_ARCH",
    "CLASSIFIER_NAME",
    "SCORE_METHODS",
    "VERSION",
    "ae_outputs",
    "augment",
    "default_data_path",
    "finish_classifier",
    "fit_latent_gaussian",
    "load_split",
    "reference_card",
    "train_autoencoder",
    "train_classifier",
    "version_retrained",
    "write_card_readme",
]
