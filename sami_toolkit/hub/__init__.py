"""Sharing a run's checkpoints on the Hugging Face Hub: the model card of every checkpoint and ``sami-kit push``.

A layer above ``report`` and ``tracking`` and below ``run``: the loop writes a card into each checkpoint directory
(:func:`~sami_toolkit.hub.model_card.write_model_card`), the CLI uploads one (:mod:`sami_toolkit.hub.push`).
``huggingface_hub`` is imported inside the functions.
"""
