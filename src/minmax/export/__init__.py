"""``minmax export``: a trained generator as a folder that stands alone.

Laid out like a model repository on the Hugging Face Hub, so it can be uploaded as is
(nothing here uses the network)::

    model.safetensors   G's weights (G_ema unless --network G), copied from the checkpoint
    config.json         how to rebuild G, what it takes and gives, where it came from
    README.md           the model card (minmax.export.card), its figures from the run's logs
    samples.png         64 samples, seed 0, shown on the card
    model.onnx          with --onnx: G as an ONNX graph (minmax.export.onnx)

config.json, format version 1 (``minmax.store`` reads it; ``minmax.load_generator`` loads it):

    format, format_version   "minmax-generator", 1: readers refuse a newer version
    minmax_version           the minmax that wrote it
    network                  "G_ema" or "G": the network the weights are
    arch, G[, units]         the checkpoint's networks spec for G, so that
                             ``minmax.models.rebuild(config, "G")`` builds it; ``units`` (a
                             standardised points run) maps G's output to the data's units
    z_dim, z_distribution    z ~ N(0, I) of z_dim numbers
    n_classes, class_names   0 for an unconditional G; names null where the data had none
    output                   {"kind": "images" | "points", "shape", "range", "dtype"}: images
                             (C, H, W) in [-1, 1] (pixels: round((x + 1) · 127.5)); points
                             (d,) unbounded (range null), in the training data's units
    data                     {"name", "sha256", "shape", "n_classes"}: the training data, by
                             its name (a file's name, not its path) and content fingerprint
    training                 {"run", "checkpoint", "preset", "kimg", "step"}

A reader of version 1 ignores keys it does not know; a change that would make it misread a
folder raises the version.
"""

from minmax.export.folder import export_run

__all__ = ["export_run"]
