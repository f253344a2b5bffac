"""Which models have which parts, declared once and free of torch: the rules (which keys act, rules/active.py
and validate.py), the dropout types (which models they act on, regularizers/) and the engine read these.
models/__init__.py ARCHITECTURES maps the same names to their classes (a test checks they agree)."""

MODELS = ("mlp", "cnn", "resnet", "vit")  # model.name
CONV_MODELS = ("cnn", "resnet")  # conv feature maps: dropout.p_conv, conv-map dropout types, channels_last on images
RESIDUAL_MODELS = ("resnet", "vit")  # residual blocks: model.depth, reg.drop_path
# fully-connected hidden layers built by models/blocks.py: model.hidden, dropout.per_layer and placement, and the
# weight layers a dropout type may wrap (DropConnect); residual networks place their dropout slots themselves
LAYERED_MODELS = ("mlp", "cnn")
